/* A little help for the entry form. Every page works without this file. */
(function () {
  "use strict";

  // The slider counts only once it has been touched: until then its thumb is hidden and the
  // "I have moved the slider" box (the no-JavaScript fallback) stays unticked.
  document.querySelectorAll("[data-vas]").forEach(function (box) {
    var slider = box.querySelector("input[type=range]");
    var check = box.querySelector(".touch-check input");
    box.querySelector(".touch-check").hidden = true;
    function touched() {
      slider.classList.remove("untouched");
      check.checked = true;
    }
    slider.addEventListener("input", touched);
    slider.addEventListener("change", touched);
    slider.addEventListener("pointerup", touched);
  });

  // "I had none of these" answers every side effect not yet answered with "none".
  document.querySelectorAll("[data-checklist]").forEach(function (list) {
    var button = list.querySelector("[data-none-of-these]");
    if (!button) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      list.querySelectorAll("fieldset.term").forEach(function (term) {
        if (!term.querySelector("input:checked")) {
          term.querySelector("input[value=none]").checked = true;
        }
      });
    });
  });

  // An alerting answer (a severe side effect) shows the site's phone number at once.
  var contact = document.querySelector("[data-contact]");
  document.addEventListener("change", function (event) {
    if (contact && event.target.matches("input[data-alert]") && event.target.checked) {
      contact.hidden = false;
    }
  });

  // The phone's own clock goes beside the server's receipt time; one tap sends once.
  document.querySelectorAll("form[data-entry]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var field = form.querySelector("input[name=device_time]");
      if (field) field.value = new Date().toISOString();
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
    });
  });
})();

/* "Turn on reminders": register the service worker and send the push subscription. */
(function () {
  "use strict";
  var button = document.querySelector("[data-push-on]");
  if (!button || !button.dataset.key || !("serviceWorker" in navigator) || !("PushManager" in window)) return;
  var status = document.querySelector("[data-push-status]");
  var csrf = document.querySelector("input[name=csrf_token]");
  function key(base64) {
    var padded = (base64 + "===".slice((base64.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(padded), function (c) { return c.charCodeAt(0); });
  }
  button.hidden = false;
  status.textContent = "";
  button.addEventListener("click", function () {
    navigator.serviceWorker.register("/p/sw.js").then(function (registration) {
      return registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key(button.dataset.key) });
    }).then(function (subscription) {
      return fetch("/p/push/subscribe", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf ? csrf.value : "" },
        body: JSON.stringify(subscription) });
    }).then(function (response) {
      status.textContent = response.ok ? "Reminders are on for this phone." : "That did not work. Please try again later.";
    }).catch(function () {
      status.textContent = "Notifications are blocked or not supported in this browser.";
    });
  });
})();
