// The app's service worker: it keeps the app's own files so that the app
// starts, and captures, with no connection. It keeps nothing else: not an
// API answer, not a key, not a report (sealed or not), not a shared file.
// Requests outside /app/ and to other origins go to the network untouched.
//
// The app's files are fetched from the network first, so a new version is
// used as soon as it is served; the kept copy answers only when the
// network cannot. The fetch revalidates the browser's HTTP cache (each
// file has an entity tag): an unchanged file costs a 304, not a download.
// The version below changes with every build of the app, which makes the
// browser install this worker again and drop the old copy.
"use strict";

const VERSION = "{{app-version}}";
const CACHE = `medseal-app-${VERSION}`;
const FILES = [
  "./", "index.html", "app.css", "app.js", "console.js", "capture.js", "capture-worker.js",
  "worker.js", "reader.js", "bundle.js", "ring.js", "medseal_web.js", "medseal_web_bg.wasm",
  "medseal_capture.js", "medseal_capture_bg.wasm",
  "manifest.webmanifest", "icon.svg", "icon-192.png", "icon-512.png",
];
const scope = new URL(self.registration.scope);
const KEPT = new Set(FILES.map((f) => new URL(f, scope).pathname));

self.addEventListener("install", (e) => {
  e.waitUntil(
    caches.open(CACHE)
      .then((c) => c.addAll(FILES.map((f) => new Request(new URL(f, scope), { cache: "no-store" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (e) => {
  e.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith("medseal-app-") && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== scope.origin || !KEPT.has(url.pathname)) return;
  e.respondWith(
    fetch(e.request, { cache: "no-cache" })
      .then((r) => {
        if (r.ok && r.type === "basic") {
          const copy = r.clone();
          caches.open(CACHE).then((c) => c.put(url.pathname, copy));
        }
        return r;
      })
      .catch(() => caches.match(url.pathname, { cacheName: CACHE }).then((r) => r || Response.error())),
  );
});
