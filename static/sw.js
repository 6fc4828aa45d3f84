/* The diary's service worker (scope /p/): reminder notifications, and the app shell and the
   participant's open entry forms kept on the phone so that an entry can be made without a
   connection. The server writes the shell's fingerprinted addresses into SHELL. */
var SHELL = /*SHELL*/[];
var SHELL_CACHE = "diary-shell-" + SHELL.join("|").length + "-" + (SHELL[1] || "");
var PAGES = "diary-pages";
var OFFLINE_URL = SHELL[0];

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(SHELL_CACHE).then(function (cache) { return cache.addAll(SHELL); })
    .then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (keys) {
    return Promise.all(keys.filter(function (key) { return key.indexOf("diary-shell-") === 0 && key !== SHELL_CACHE; })
      .map(function (key) { return caches.delete(key); }));
  }).then(function () { return self.clients.claim(); }));
});

// An entry sent with the page's own form (Review, or Save) that fails on the way: no connection
// although the phone thinks it has one, a connection reset, a timeout, or a server error. The
// answers are kept in the same outbox as entries made offline (diary.js sends them when the
// diary answers again), and the participant is told so in their language (the form carries the
// words in its kept_* fields).
var SEND_TIMEOUT_MS = 30000;
var ENTRY_POST = /^\/p\/entry\/(\d+)$/;

function outbox(work) {
  return new Promise(function (resolve, reject) {
    var open = indexedDB.open("diary", 1);
    open.onupgradeneeded = function () { open.result.createObjectStore("outbox", { keyPath: "assessment" }); };
    open.onerror = function () { reject(open.error); };
    open.onsuccess = function () {
      var tx = open.result.transaction("outbox", "readwrite");
      work(tx.objectStore("outbox"));
      tx.oncomplete = function () { resolve(); };
      tx.onerror = function () { reject(tx.error); };
    };
  });
}

function escaped(text) {
  return String(text || "").replace(/[&<>"']/g, function (c) {
    return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
  });
}

function keep(copy, assessment) {
  return copy.formData().then(function (form) {
    var fields = {};
    form.forEach(function (value, name) {
      if (name === "csrf_token" || name === "step" || name.indexOf("kept_") === 0) return;
      if (fields[name] === undefined) fields[name] = value;
      else fields[name] = [].concat(fields[name], value);
    });
    var entry = { assessment: assessment, url: "/p/entry/" + assessment + "/sync", key: fields.idempotency_key,
                  fields: fields, made_at: new Date().toISOString() };
    return outbox(function (store) { store.put(entry); }).then(function () {
      var html = '<!doctype html><html lang="' + escaped(form.get("kept_lang") || "en") + '"><head><meta charset="utf-8">' +
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>' + escaped(form.get("kept_title")) +
        '</title><link rel="stylesheet" href="' + escaped(SHELL[1]) + '"></head><body class="participant"><main id="main">' +
        '<section class="card" data-kept-page><h1>' + escaped(form.get("kept_title")) + '</h1><p role="status">' +
        escaped(form.get("kept_note")) + '</p><a class="button" href="/p/today">' + escaped(form.get("kept_back")) +
        '</a></section></main></body></html>';
      return new Response(html, { status: 200, headers: { "Content-Type": "text/html; charset=utf-8" } });
    });
  });
}

function sendOrKeep(request, assessment) {
  var copy = request.clone();
  var timeout = new Promise(function (_, reject) { setTimeout(function () { reject(new Error("timeout")); }, SEND_TIMEOUT_MS); });
  return Promise.race([fetch(request), timeout]).then(function (response) {
    return response.status >= 500 ? keep(copy, assessment) : response;
  }).catch(function () { return keep(copy, assessment); });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.method === "POST" && request.mode === "navigate" && ENTRY_POST.test(url.pathname)) {
    var assessment = url.pathname.match(ENTRY_POST)[1];
    event.respondWith(request.clone().formData().then(function (form) {
      // "Change my answers" is no entry to keep.
      return form.get("step") === "edit" ? fetch(request) : sendOrKeep(request, assessment);
    }));
    return;
  }
  if (request.method !== "GET") return;
  if (url.pathname.indexOf("/assets/") === 0) {
    // Fingerprinted: a cached copy is always the right one.
    event.respondWith(caches.match(request, { ignoreVary: true }).then(function (hit) { return hit || fetch(request); }));
    return;
  }
  if (request.mode === "navigate" && url.pathname.indexOf("/p/") === 0) {
    // The network first (the page is always fresh when it can be); the phone's copy without one.
    event.respondWith(fetch(request).then(function (response) {
      if (response.ok && /^\/p\/(today|entry\/\d+)$/.test(url.pathname)) {
        var copy = response.clone();
        caches.open(PAGES).then(function (cache) { cache.put(request, copy); });
      }
      return response;
    }).catch(function () {
      return caches.match(request, { ignoreVary: true, ignoreSearch: true }).then(function (hit) {
        return hit || caches.match(OFFLINE_URL, { ignoreVary: true });
      });
    }));
  }
});

self.addEventListener("push", function (event) {
  var data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = {}; }
  event.waitUntil(self.registration.showNotification(data.title || "Diary", {
    body: data.body || "",
    data: { url: data.url || "/p/today" }
  }));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  event.waitUntil(clients.openWindow(event.notification.data.url));
});
