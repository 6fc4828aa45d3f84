/* A little help for the entry form. Every page works without this file. */
(function () {
  "use strict";

  // The visual analogue scale: a line and its two anchors, and no mark until the participant
  // places one (no default, no fill, no number). A tap or a drag puts the mark where the finger
  // is; once focused, arrow keys move it by 1 and Page keys by 10 (Home and End to the ends).
  // The range input stays in the form as the value (the no-JavaScript fallback), hidden.
  document.querySelectorAll("[data-vas]").forEach(function (box) {
    var slider = box.querySelector("input[type=range]");
    var check = box.querySelector(".touch-check input");
    var scale = box.querySelector(".vas-scale");
    var track = box.querySelector(".vas-track");
    var mark = box.querySelector(".vas-placed");
    var shown = box.querySelector(".vas-value");
    scale.hidden = false;
    slider.hidden = true;
    box.querySelector(".touch-check").hidden = true;
    var value = check.checked ? Number(slider.value) : null;

    function draw() {
      mark.hidden = value === null;
      if (value !== null) mark.style.left = value + "%";
      track.setAttribute("aria-valuetext", value === null ? track.dataset.unmarkedText : String(value));
      if (value === null) track.removeAttribute("aria-valuenow");
      else track.setAttribute("aria-valuenow", String(value));
      if (shown) shown.textContent = value === null ? "" : String(value);
    }
    function place(next) {
      next = Math.max(0, Math.min(100, Math.round(next)));
      var changed = next !== value || !check.checked;
      value = next;
      slider.value = String(next);
      slider.classList.remove("untouched");
      check.checked = true;
      draw();
      // The form's listeners keep the draft on the phone.
      if (changed) slider.dispatchEvent(new Event("change", { bubbles: true }));
    }
    function fromPointer(event) {
      var line = track.getBoundingClientRect();
      place((event.clientX - line.left) / line.width * 100);
    }
    track.addEventListener("pointerdown", function (event) {
      event.preventDefault();
      track.focus();
      track.setPointerCapture(event.pointerId);
      fromPointer(event);
    });
    track.addEventListener("pointermove", function (event) {
      if (track.hasPointerCapture(event.pointerId)) fromPointer(event);
    });
    track.addEventListener("keydown", function (event) {
      var steps = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageUp: 10, PageDown: -10 };
      var start = value === null ? 50 : value;  // a keyboard has to start somewhere: the middle
      if (event.key in steps) place(start + steps[event.key]);
      else if (event.key === "Home") place(0);
      else if (event.key === "End") place(100);
      else return;
      event.preventDefault();
    });
    // A draft restored from the phone sets the range input: follow it.
    slider.addEventListener("input", function () { value = Number(slider.value); draw(); });
    draw();
  });

  // A screen narrower than the protocol's minimum: say that the scale may not be as validated.
  var narrow = document.querySelector("[data-too-narrow]");
  if (narrow && window.innerWidth < Number(narrow.dataset.tooNarrow)) narrow.hidden = false;

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
      // Setting .checked fires no event: say so, so the draft keeps these answers too.
      list.dispatchEvent(new Event("change", { bubbles: true }));
    });
  });

  // An alerting answer (a severe side effect) shows the site's phone number at once, right
  // under the answer that raised it; another answer to the same question hides it again.
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input.type !== "radio") return;
    var box = document.querySelector('[data-contact-for="' + input.name + '"]');
    if (!box) return;
    box.hidden = !(input.checked && input.hasAttribute("data-alert"));
    // The warning may open below the screen's edge (the last answer of a page): bring it in.
    if (!box.hidden && box.scrollIntoView) box.scrollIntoView({ block: "nearest", behavior: "smooth" });
  });

  // The phone's own clock goes beside the server's receipt time; one tap sends once.
  document.querySelectorAll("form[data-entry]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var field = form.querySelector("input[name=device_time]");
      if (field) field.value = new Date().toISOString();
      // What the entry was answered on (sizes in CSS pixels; the browser is read from its name).
      var device = form.querySelector("input[name=device]");
      if (device) {
        var root = parseFloat(getComputedStyle(document.documentElement).fontSize) || 18;
        device.value = JSON.stringify({ viewport_width: window.innerWidth, viewport_height: window.innerHeight,
          device_pixel_ratio: window.devicePixelRatio, zoom: window.visualViewport ? window.visualViewport.scale : null,
          text_scale: root / 18 });  // 18 px: the diary's own root size (112.5%) at the browser's default
      }
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
    });
  });
})();

/* Staff pages: the infusion time's "Now" and "The planned time", and the link sheet's Print. */
(function () {
  "use strict";
  document.querySelectorAll("[data-fill-for]").forEach(function (box) {
    var input = document.getElementById(box.dataset.fillFor);
    if (!input) return;
    box.hidden = false;
    var now = box.querySelector("[data-fill-now]");
    if (now) now.addEventListener("click", function () {
      // "YYYY-MM-DD HH:MM" on the participant's clock, as the field takes it.
      var parts = {};
      new Intl.DateTimeFormat("en-GB", { timeZone: box.dataset.timezone, year: "numeric", month: "2-digit",
        day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).formatToParts(new Date())
        .forEach(function (part) { parts[part.type] = part.value; });
      input.value = parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" + parts.minute;
      input.focus();
    });
    box.querySelectorAll("[data-fill-value]").forEach(function (button) {
      button.addEventListener("click", function () { input.value = button.dataset.fillValue; input.focus(); });
    });
  });
  var print = document.querySelector("[data-print]");
  if (print) {
    print.hidden = false;
    print.addEventListener("click", function () { window.print(); });
  }
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

/* A draft of each entry form lives in the phone's storage (localStorage, not only this tab), so a
   reload, a new tab or a dropped connection does not lose what a tired participant typed.
   Cleared once the entry is saved. */
(function () {
  "use strict";
  var form = document.querySelector("form[data-draft]");
  var saved = document.querySelector("[data-saved-entry]");
  if (saved) { try { localStorage.removeItem("diary-draft-" + saved.dataset.savedEntry); } catch (e) {} }
  if (!form || !window.localStorage) return;
  var key = "diary-draft-" + form.dataset.draft;
  var skip = { csrf_token: 1, idempotency_key: 1, step: 1, device_time: 1, device: 1, stamp: 1 };
  function save() {
    var draft = {};
    new FormData(form).forEach(function (value, name) { if (!skip[name] && name.indexOf("kept_") !== 0) draft[name] = value; });
    try { localStorage.setItem(key, JSON.stringify(draft)); } catch (e) {}
  }
  var hasAnswers = Array.prototype.some.call(form.elements, function (el) {
    return (el.type === "radio" || el.type === "checkbox") ? el.checked : (el.type === "textarea" && el.value);
  });
  var stored = null;
  try { stored = JSON.parse(localStorage.getItem(key) || "null"); } catch (e) {}
  if (stored && !hasAnswers) {
    Object.keys(stored).forEach(function (name) {
      form.querySelectorAll('[name="' + name + '"]').forEach(function (el) {
        if (el.type === "radio") { el.checked = el.value === stored[name]; }
        else if (el.type === "checkbox") { el.checked = true; }
        else { el.value = stored[name]; }
        if (el.type === "range" && stored[name + ".touched"]) {
          el.classList.remove("untouched");
          el.dispatchEvent(new Event("input"));  // the scale draws the restored mark
        }
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

/* Installable and usable without a connection. The service worker keeps the app shell and the
   open entry forms on the phone; an entry made with no connection is kept in IndexedDB with the
   phone's time and its form key, and sent when the connection is back (at the next page load or
   the browser's "online" event). The server judges it by when it was made (see /p/entry/N/sync). */
(function () {
  "use strict";
  var csrf = document.querySelector("input[name=csrf_token]");
  var notice = document.querySelector("[data-sync]");
  if (!notice) return;  // staff pages: no diary worker, no outbox

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/p/sw.js", { scope: "/p/" }).catch(function () {});
  }

  // While connected, keep a copy of every entry that is open now, for filling in offline later.
  if (navigator.onLine && window.caches) {
    var links = Array.prototype.map.call(document.querySelectorAll("a[data-open-entry]"), function (a) { return a.href; });
    if (links.length) {
      caches.open("diary-pages").then(function (cache) { return cache.addAll(links); }).catch(function () {});
    }
  }

  // The outbox: one IndexedDB store of entries waiting to be sent, keyed by assessment.
  function outbox(mode, work) {
    return new Promise(function (resolve, reject) {
      if (!window.indexedDB) { reject(new Error("no IndexedDB")); return; }
      var open = indexedDB.open("diary", 1);
      open.onupgradeneeded = function () { open.result.createObjectStore("outbox", { keyPath: "assessment" }); };
      open.onerror = function () { reject(open.error); };
      open.onsuccess = function () {
        var tx = open.result.transaction("outbox", mode);
        var result = work(tx.objectStore("outbox"));
        tx.oncomplete = function () { resolve(result && result.result !== undefined ? result.result : result); };
        tx.onerror = function () { reject(tx.error); };
      };
    });
  }

  function say(text, kind) {
    if (!notice) return;
    var line = document.createElement("p");
    line.className = "flash" + (kind ? " flash-" + kind : "");
    line.setAttribute("role", "status");
    line.textContent = text;
    notice.appendChild(line);
    notice.hidden = false;
  }

  // Make the entry without a connection: everything answered, then kept on the phone.
  var form = document.querySelector("form[data-draft]");
  if (form) {
    form.addEventListener("submit", function (event) {
      if (navigator.onLine) return;
      event.preventDefault();
      var missing = Array.prototype.some.call(form.querySelectorAll("fieldset.term, .item.nrs, .item.choice"), function (group) {
        return group.querySelector("input[type=radio]") && !group.querySelector("input[type=radio]:checked");
      }) || Array.prototype.some.call(form.querySelectorAll("input[type=range].untouched"), function () { return true; });
      if (missing) { say(form.dataset.offlineMissing, "error"); window.scrollTo(0, 0); return; }
      var fields = {};
      new FormData(form).forEach(function (value, name) {
        if (name === "csrf_token" || name === "step" || name.indexOf("kept_") === 0) return;
        if (fields[name] === undefined) fields[name] = value;
        else fields[name] = [].concat(fields[name], value);
      });
      var entry = { assessment: form.dataset.draft, url: form.action.replace(/\/?$/, "/sync"),
                    key: fields.idempotency_key, fields: fields, made_at: new Date().toISOString() };
      outbox("readwrite", function (store) { return store.put(entry); }).then(function () {
        try { localStorage.removeItem("diary-draft-" + form.dataset.draft); } catch (e) {}
        form.hidden = true;
        say(form.dataset.offlineSaved);
        window.scrollTo(0, 0);
      }).catch(function () { say(form.dataset.offlineFailed, "error"); });
    });
  }

  // Send what waits on the phone; each entry is sent once, and a second send stores nothing.
  var sending = false, stored = false;
  function sync() {
    if (sending || !navigator.onLine || !csrf || !window.indexedDB) return;
    sending = true;
    outbox("readonly", function (store) { return store.getAll(); }).then(function (entries) {
      return entries.reduce(function (chain, entry) {
        return chain.then(function () {
          return fetch(entry.url, { method: "POST", credentials: "same-origin",
            headers: { "Content-Type": "application/json", "X-CSRFToken": csrf.value },
            body: JSON.stringify({ fields: entry.fields, key: entry.key, made_at: entry.made_at,
                                   device_now: new Date().toISOString() }) })
            .then(function (response) {
              if (response.status >= 500 || response.status === 400 && !response.headers.get("Content-Type")) return;
              return response.json().then(function (body) {
                if (body.status === "stored") stored = true;
                if (body.status === "stored" || body.status === "already") say(notice.dataset.sentText);
                else say(notice.dataset.refusedText + " " + body.message, "error");
                return outbox("readwrite", function (store) { return store.delete(entry.assessment); });
              });
            });
        });
      }, Promise.resolve());
    }).catch(function () {}).then(function () {
      sending = false;
      // Today lists what is still to fill in: once a kept entry is stored, show it as done.
      if (stored && notice && notice.hasAttribute("data-refresh-after-sync")) {
        setTimeout(function () { window.location.reload(); }, 1500);
      }
    });
  }
  window.addEventListener("online", sync);
  sync();

  // Installing: the browser's own prompt where it has one, a hint on iPhones (Safari has none).
  var install = document.querySelector("[data-install]");
  window.addEventListener("beforeinstallprompt", function (event) {
    event.preventDefault();
    if (!install) return;
    install.hidden = false;
    install.querySelector("button").addEventListener("click", function () { event.prompt(); install.hidden = true; });
  });
  var hint = document.querySelector("[data-ios-hint]");
  var standalone = window.navigator.standalone || window.matchMedia("(display-mode: standalone)").matches;
  if (hint && /iPhone|iPad|iPod/.test(navigator.userAgent) && !standalone) hint.hidden = false;
})();
