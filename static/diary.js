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

  // An alerting answer (a severe side effect) shows the site's phone number at once, right
  // under the answer that raised it; another answer to the same question hides it again.
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input.type !== "radio") return;
    var box = document.querySelector('[data-contact-for="' + input.name + '"]');
    if (box) box.hidden = !(input.checked && input.hasAttribute("data-alert"));
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
      // The words come from the page, in the participant's language.
      status.textContent = response.ok ? status.dataset.onText : status.dataset.failedText;
    }).catch(function () {
      status.textContent = status.dataset.blockedText;
    });
  });
})();

/* A draft of the entry form lives in this tab's sessionStorage, so a reload or a dropped
   connection does not lose what a tired participant typed. Cleared once the entry is saved. */
(function () {
  "use strict";
  var form = document.querySelector("form[data-draft]");
  var saved = document.querySelector("[data-saved-entry]");
  if (saved) { try { sessionStorage.removeItem("diary-draft-" + saved.dataset.savedEntry); } catch (e) {} }
  if (!form || !window.sessionStorage) return;
  var key = "diary-draft-" + form.dataset.draft;
  var skip = { csrf_token: 1, idempotency_key: 1, step: 1, device_time: 1 };
  function save() {
    var draft = {};
    new FormData(form).forEach(function (value, name) { if (!skip[name]) draft[name] = value; });
    try { sessionStorage.setItem(key, JSON.stringify(draft)); } catch (e) {}
  }
  var hasAnswers = Array.prototype.some.call(form.elements, function (el) {
    return (el.type === "radio" || el.type === "checkbox") ? el.checked : (el.type === "textarea" && el.value);
  });
  var stored = null;
  try { stored = JSON.parse(sessionStorage.getItem(key) || "null"); } catch (e) {}
  if (stored && !hasAnswers) {
    Object.keys(stored).forEach(function (name) {
      form.querySelectorAll('[name="' + name + '"]').forEach(function (el) {
        if (el.type === "radio") { el.checked = el.value === stored[name]; }
        else if (el.type === "checkbox") { el.checked = true; }
        else { el.value = stored[name]; }
        if (el.type === "range" && stored[name + ".touched"]) { el.classList.remove("untouched"); }
      });
    });
    // A restored severe answer shows its warning again.
    form.querySelectorAll("input[data-alert]:checked").forEach(function (el) {
      var box = document.querySelector('[data-contact-for="' + el.name + '"]');
      if (box) box.hidden = false;
    });
  }
  form.addEventListener("input", save);
  form.addEventListener("change", save);
})();
