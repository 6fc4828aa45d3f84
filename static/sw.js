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

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") return;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
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
