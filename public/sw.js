// webtune's service worker: makes the static site work offline after its first visit.
// Same-origin GET requests only (the app shell, hashed assets, the demo model). Navigations go to the
// network first (so a new deployment is picked up) and fall back to the cache; everything else is
// served from the cache first and refreshed in the background. Cross-origin requests (Hub downloads)
// are never touched: those are cached by the app itself in IndexedDB.
const CACHE = 'webtune-shell-v1';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || new URL(req.url).origin !== self.location.origin) return;
  if (req.headers.has('range')) return;
  event.respondWith(handle(req, event));
});

async function handle(req, event) {
  const cache = await caches.open(CACHE);
  if (req.mode === 'navigate') {
    try {
      const res = await fetch(req);
      if (res.ok) await cache.put(req, res.clone());
      return res;
    } catch {
      return (await cache.match(req)) || (await cache.match('./')) || Response.error();
    }
  }
  const hit = await cache.match(req);
  const refresh = fetch(req)
    .then(async (res) => {
      if (res.ok && res.type === 'basic') await cache.put(req, res.clone());
      return res;
    })
    .catch(() => null);
  if (hit) {
    event.waitUntil(refresh);
    return hit;
  }
  return (await refresh) || Response.error();
}
