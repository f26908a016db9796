/*
 * Browser session manager for the Session + Personalization Engine.
 *
 * A dependency-free ES module; loaded by a plain <script> (the minified IIFE build)
 * or imported, it installs `window.sessionManager`. See README "Browser session manager".
 */

const PURPOSES = ['analytics', 'personalization', 'marketing', 'fingerprinting', 'saleSharing']
const ACTIVITY = ['pointerdown', 'keydown', 'scroll', 'touchstart', 'mousemove']
// sendBeacon and keepalive requests share a 64 KB budget per page; stay under it.
const BEACON_BYTES = 60000
const DEFAULTS = {
  endpoint: '',
  flushInterval: 5000,
  batchSize: 20,
  autoPageViews: true,
  heartbeatInterval: 60000,
  maxQueue: 500,
  retryBase: 1000,
  retryMax: 60000,
}

export function uuid(c = globalThis.crypto) {
  if (c && c.randomUUID) return c.randomUUID()
  const b = new Uint8Array(16)
  if (c && c.getRandomValues) c.getRandomValues(b)
  else for (let i = 0; i < 16; i++) b[i] = (Math.random() * 256) | 0
  b[6] = (b[6] & 15) | 64
  b[8] = (b[8] & 63) | 128
  const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join('')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

// Exponential backoff with "equal jitter": half fixed, half random, so a crowd of
// clients coming back online does not retry in lockstep.
export function backoff(attempt, base = 1000, max = 60000, rnd = Math.random) {
  const d = Math.min(max, base * 2 ** Math.min(attempt, 30))
  return Math.round(d / 2 + (rnd() * d) / 2)
}

// localStorage when it works; else a first-party cookie for the small session state
// (the event queue then lives in memory only); else memory.
export function createStore(win = globalThis) {
  const mem = {}
  const doc = win.document
  let ls = null
  try {
    ls = win.localStorage
    ls.setItem('spe:t', '1')
    ls.removeItem('spe:t')
  } catch {
    ls = null
  }
  const cookies = !ls && !!doc && !!(win.navigator || {}).cookieEnabled
  const cname = (k) => k.replace(/[^\w-]/g, '_')
  return {
    kind: ls ? 'localStorage' : cookies ? 'cookie' : 'memory',
    get(k) {
      try {
        let raw = mem[k]
        if (ls) raw = ls.getItem(k)
        else if (cookies && raw === undefined) {
          const m = doc.cookie.match(new RegExp('(?:^|; )' + cname(k) + '=([^;]*)'))
          raw = m && decodeURIComponent(m[1])
        }
        return raw ? JSON.parse(raw) : null
      } catch {
        return null
      }
    },
    // `small` values may go to the cookie; large ones (the queue) never do.
    set(k, v, small) {
      const raw = v == null ? '' : JSON.stringify(v)
      try {
        if (ls) return raw ? ls.setItem(k, raw) : ls.removeItem(k)
      } catch {
        // Quota exceeded: keep going in memory rather than lose the event.
      }
      mem[k] = raw
      if (cookies && small) {
        const secure = win.location && win.location.protocol === 'https:' ? '; Secure' : ''
        doc.cookie = `${cname(k)}=${encodeURIComponent(raw)}; Path=/; Max-Age=${raw ? 31536000 : 0}; SameSite=Lax${secure}`
      }
    },
  }
}

// The offline queue: persisted, capped (oldest dropped first), acknowledged by messageId.
export function createQueue(store, key, max = 500) {
  const all = () => {
    const q = store.get(key)
    return Array.isArray(q) ? q : []
  }
  return {
    all,
    push(e) {
      const q = all()
      q.push(e)
      const dropped = q.length > max ? q.splice(0, q.length - max) : []
      store.set(key, q)
      return dropped
    },
    remove(ids) {
      const s = new Set(ids)
      store.set(key, all().filter((e) => !s.has(e.messageId)))
    },
    clear() {
      store.set(key, [])
    },
  }
}

// Split events into request bodies of at most `maxBytes` of JSON each.
export function chunk(events, extra, maxBytes) {
  const out = []
  let cur = []
  for (const e of events) {
    cur.push(e)
    if (cur.length > 1 && JSON.stringify({ ...extra, events: cur }).length > maxBytes) {
      cur.pop()
      out.push(cur)
      cur = [e]
    }
  }
  if (cur.length) out.push(cur)
  return out
}

/*
 * Fingerprinting runs only with `fingerprinting` consent, and uses a modest set of
 * stable signals: screen size and colour depth, device pixel ratio, time zone,
 * languages, platform, CPU cores, device memory and touch points. No canvas, WebGL,
 * audio or font probing. Only its SHA-256 and these components are sent.
 */
export async function fingerprint(win = globalThis) {
  const n = win.navigator || {}
  const s = win.screen || {}
  const subtle = win.crypto && win.crypto.subtle
  if (!subtle) return null
  const components = {
    screen: `${s.width}x${s.height}x${s.colorDepth}`,
    pixelRatio: win.devicePixelRatio,
    timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
    languages: (n.languages || [n.language]).join(','),
    platform: n.platform,
    cores: n.hardwareConcurrency,
    memory: n.deviceMemory,
    touchPoints: n.maxTouchPoints,
  }
  const digest = await subtle.digest('SHA-256', new TextEncoder().encode(JSON.stringify(components)))
  return { hash: Array.from(new Uint8Array(digest), (x) => (x + 256).toString(16).slice(1)).join(''), components }
}

export function createSessionManager(env = {}) {
  const win = env.window || globalThis
  const now = env.now || Date.now
  const later = env.setTimeout || ((f, ms) => setTimeout(f, ms))
  const cancel = env.clearTimeout || ((t) => clearTimeout(t))
  const listeners = {}
  const doc = win.document
  const nav = win.navigator || {}
  const loc = win.location
  let cfg, store, queue, key
  let state = {}
  let started, ready, sending, restoring, flushTimer, retryTimer, hbTimer, active
  let attempt = 0
  let pending = []
  let lastPath, prevUrl
  const api = {}

  const emit = (name, data) => {
    for (const fn of listeners[name] || []) {
      try {
        fn(data)
      } catch {
        // A listener's bug must not break tracking.
      }
    }
  }
  const fail = (type, error, extra) =>
    emit('error', { type, status: (error && error.status) || 0, message: String((error && error.message) || error), ...extra })
  const iso = () => new Date(now()).toISOString()
  const allowed = () => !!(ready && state.consent && state.consent.analytics)
  const gpc = () => nav.globalPrivacyControl === true
  const save = (patch) => {
    state = { ...state, ...patch }
    store.set(key, state, true)
  }
  // Another tab may have rotated the token or replaced the session: storage is the truth.
  const sync = () => {
    const s = store.get(key)
    if (s && s.sid) state = s
  }
  const touch = () => save({ exp: now() + (state.idle || 1800) * 1000 })

  function snapshot() {
    return {
      sessionId: state.sid || null,
      anonymousId: state.aid || null,
      userId: state.uid || null,
      consent: { ...state.consent },
      gpc: gpc(),
      expiresAt: state.exp ? new Date(state.exp).toISOString() : null,
      storage: store ? store.kind : null,
      queued: queue ? queue.all().length : 0,
    }
  }

  async function request(method, path, body, token) {
    const headers = { 'Content-Type': 'application/json' }
    if (token) headers.Authorization = `Bearer ${token}`
    else headers['X-Site-Key'] = cfg.siteKey
    let res
    try {
      res = await win.fetch(`${cfg.endpoint}/api/sessions/${path}`, {
        method,
        headers,
        body: body && JSON.stringify(body),
        credentials: 'omit',
      })
    } catch (e) {
      throw Object.assign(new Error(`network: ${e.message}`), { status: 0 })
    }
    let data = null
    try {
      data = await res.json()
    } catch {
      // An empty or non-JSON body (a proxy's error page) carries nothing we need.
    }
    if (!res.ok) throw Object.assign(new Error((data && data.detail) || res.statusText), { status: res.status, data })
    return data || {}
  }

  // A call with the session token: adopts rotated tokens, and on 401/404/409 restores the
  // session (a new one when it is gone) and sends once more.
  async function call(method, sub, body, retried) {
    sync()
    const { sid, tok } = state
    try {
      if (!sid) throw Object.assign(new Error('no session'), { status: 401 })
      const data = await request(method, sid + sub, body, tok)
      if (data.token && state.sid === sid) save({ tok: data.token })
      touch()
      return data
    } catch (e) {
      if (retried || ![401, 404, 409].includes(e.status)) throw e
      await restore(sid, tok)
      return call(method, sub, body, true)
    }
  }

  function adopt(data) {
    const changed = data.sessionId !== state.sid
    save({
      sid: data.sessionId,
      tok: data.token,
      aid: data.anonymousId,
      consent: data.consent,
      idle: data.idleTimeoutSeconds,
    })
    touch()
    if (changed && ready) emit('session', snapshot())
  }

  // Create a session, restoring `sid` when the server still knows it (or carrying its
  // visitor and consent over to a new one when it has ended).
  function restore(sid, tok) {
    if (!restoring) {
      restoring = (async () => {
        sync()
        // Someone (another tab) already moved on from the credentials that failed.
        if (state.sid != sid || state.tok != tok) return
        const body = createBody(sid && tok ? { sessionId: sid, token: tok } : null)
        const fp = state.consent && state.consent.fingerprinting && (await fingerprint(win).catch(() => null))
        if (fp) body.fingerprint = fp
        adopt(await request('POST', 'create', body))
      })().finally(() => {
        restoring = null
      })
    }
    return restoring
  }

  function createBody(restoreFrom) {
    const body = { landingPage: loc.pathname + loc.search, referrer: doc.referrer || '', gpc: gpc() }
    if (state.aid) body.anonymousId = state.aid
    if (state.given) body.consent = state.given
    if (restoreFrom) body.restore = restoreFrom
    const utm = {}
    for (const [k, v] of new URLSearchParams(loc.search)) if (/^utm_/.test(k)) utm[k.slice(4)] = v.slice(0, 200)
    if (Object.keys(utm).length) body.utm = utm
    return body
  }

  async function open() {
    sync()
    // A session this browser holds and believes alive is used without a round trip;
    // if the server disagrees, the first call restores it.
    if (!(state.sid && state.tok && state.exp > now())) {
      for (;;) {
        try {
          await restore(state.sid, state.tok)
          break
        } catch (e) {
          fail('session', e)
          // Unusable stored credentials: start afresh (the visitor keeps their anonymous id).
          if (e.status === 400 && state.sid) {
            save({ sid: null, tok: null })
            continue
          }
          // A wrong site key or a rejected body will not get better by retrying.
          if (e.status >= 400 && e.status < 500 && e.status !== 429) throw e
          await new Promise((r) => later(r, backoff(attempt++, cfg.retryBase, cfg.retryMax)))
        }
      }
      attempt = 0
    }
    ready = true
    const held = pending
    pending = []
    if (allowed()) {
      for (const e of held) enqueue(e)
      identify()
      if (cfg.autoPageViews) pageView()
      flush()
    }
    emit('ready', snapshot())
    return snapshot()
  }

  function page() {
    return { url: loc.href, path: loc.pathname, title: doc.title || '', referrer: prevUrl || doc.referrer || '' }
  }

  function track(type, name, data, pg) {
    const e = {
      eventType: type,
      eventName: String(name == null ? '' : name),
      eventData: data && typeof data === 'object' ? data : {},
      page: pg || page(),
      timestamp: iso(),
      messageId: uuid(win.crypto),
    }
    if (!ready) {
      // Held in memory until the server says what consent allows; never persisted before that.
      if (pending.length < 100) pending.push(e)
      return e.messageId
    }
    if (!allowed()) return null
    enqueue(e)
    return e.messageId
  }

  function enqueue(e) {
    const dropped = queue.push(e)
    if (dropped.length) fail('queue_full', 'offline queue full: oldest events dropped', { dropped: dropped.length })
    if (queue.all().length >= cfg.batchSize) flush()
    else if (!flushTimer) flushTimer = later(flush, cfg.flushInterval)
  }

  function pageView(pg = page()) {
    lastPath = loc.pathname + loc.search
    const id = track('page_view', pg.title || pg.path, null, pg)
    prevUrl = loc.href
    return id
  }

  function flush() {
    cancel(flushTimer)
    flushTimer = null
    if (sending || retryTimer || !allowed()) return sending || Promise.resolve()
    const batch = queue.all().slice(0, cfg.batchSize)
    if (!batch.length) return Promise.resolve()
    sending = send(batch).then(
      (ok) => {
        sending = null
        if (ok) {
          attempt = 0
          if (queue.all().length) return flush()
        }
      },
      () => {
        sending = null
      },
    )
    return sending
  }

  // true when the batch is settled (stored, duplicate or rejected for good).
  async function send(batch) {
    const ids = batch.map((e) => e.messageId)
    try {
      const data = await call('POST', '/events', { events: batch, sentAt: iso() })
      queue.remove(ids)
      emit('flush', { ...data, messageIds: ids })
      return true
    } catch (e) {
      if ([400, 413, 422].includes(e.status)) {
        // A bad event must not hold the rest hostage: halve until it is alone, then drop it.
        if (batch.length === 1) {
          queue.remove(ids)
          fail('rejected', e, { messageIds: ids, errors: e.data && e.data.errors })
          return true
        }
        const h = batch.length >> 1
        return (await send(batch.slice(0, h))) && send(batch.slice(h))
      }
      fail('send', e, { queued: queue.all().length })
      retryTimer = later(
        () => {
          retryTimer = null
          flush()
        },
        backoff(attempt++, cfg.retryBase, cfg.retryMax),
      )
      return false
    }
  }

  // The page is going away: hand what is queued to the browser, which sends it even after unload.
  function beacon() {
    if (!allowed() || !nav.sendBeacon || !queue.all().length) return
    sync()
    const extra = { sentAt: iso(), token: state.tok }
    const url = `${cfg.endpoint}/api/sessions/${state.sid}/events`
    let budget = BEACON_BYTES
    // A beacon's delivery is never confirmed. While the server answers, a beacon the browser
    // accepted is trusted; after a failed send the events also stay queued for the next page
    // (a second copy is harmless: the server stores each messageId once).
    const keep = attempt > 0
    for (const events of chunk(queue.all(), extra, BEACON_BYTES)) {
      const body = JSON.stringify({ ...extra, events })
      // A string body goes as text/plain: no CORS preflight, which an unloading page cannot wait for.
      if (body.length > budget || !nav.sendBeacon(url, body)) break
      budget -= body.length
      if (!keep) queue.remove(events.map((e) => e.messageId))
    }
  }

  // Only while the page is visible and the visitor did something since the last beat:
  // an abandoned tab lets its session time out.
  function heartbeat() {
    if (doc.visibilityState !== 'hidden' && active && allowed()) {
      active = false
      call('POST', '/activity').catch((e) => fail('heartbeat', e))
    }
  }
  function beat() {
    heartbeat()
    hbTimer = later(beat, cfg.heartbeatInterval)
  }

  async function identify() {
    const uid = state.uid
    if (!uid || state.uidSid === state.sid || !ready || !(state.consent.analytics || state.consent.personalization)) return
    try {
      await call('PUT', '', { userId: uid })
      if (state.uid === uid) save({ uidSid: state.sid })
    } catch (e) {
      fail('identify', e)
    }
  }

  function route() {
    if (loc.pathname + loc.search !== lastPath) {
      lastPath = loc.pathname + loc.search
      const pg = page()
      prevUrl = pg.url
      // The title is read after the router has had its turn to set it (if still on that page).
      later(() => {
        if (loc.href === pg.url) pg.title = doc.title || ''
        if (allowed()) pageView(pg)
      }, 0)
    }
  }

  function listen() {
    const on = (t, ev, fn) => t.addEventListener(ev, fn, { capture: true, passive: true })
    const act = () => {
      active = true
    }
    for (const ev of ACTIVITY) on(win, ev, act)
    on(doc, 'visibilitychange', () => {
      if (doc.visibilityState === 'hidden') beacon()
      else {
        act()
        heartbeat()
      }
    })
    on(win, 'pagehide', beacon)
    on(win, 'online', () => {
      if (retryTimer) {
        cancel(retryTimer)
        retryTimer = null
        flush()
      }
    })
    hbTimer = later(beat, cfg.heartbeatInterval)
    if (cfg.autoPageViews) {
      const h = win.history
      for (const m of ['pushState', 'replaceState']) {
        const orig = h[m]
        h[m] = function (...a) {
          const r = orig.apply(this, a)
          route()
          return r
        }
      }
      on(win, 'popstate', route)
    }
  }

  const whenReady = () => (ready ? Promise.resolve() : started || Promise.reject(new Error('not initialised')))

  api.init = (options = {}) => {
    if (started) return started
    if (!options.siteKey) throw new Error('siteKey is required')
    const { consent, ...rest } = options
    cfg = { ...DEFAULTS, ...rest }
    cfg.batchSize = Math.max(1, Math.min(500, cfg.batchSize | 0))
    cfg.endpoint = String(cfg.endpoint).replace(/\/$/, '')
    store = env.store || createStore(win)
    key = `spe:${cfg.siteKey}`
    queue = createQueue(store, `${key}:queue`, cfg.maxQueue)
    state = store.get(key) || {}
    const choices = clean(consent)
    if (Object.keys(choices).length) save({ given: { ...state.given, ...choices } })
    listen()
    started = open()
    // The site may pass the choices of its consent banner on every page: apply changes.
    started
      .then(() => Object.keys(choices).some((p) => state.consent[p] !== choices[p]) && api.updateConsent(choices))
      .catch(() => {})
    return started
  }

  function clean(choices) {
    const out = {}
    for (const p of PURPOSES) if (choices && typeof choices[p] === 'boolean') out[p] = choices[p]
    if (gpc()) out.saleSharing = out.marketing = false
    return out
  }

  api.getSessionId = () => (ready ? state.sid : null)
  api.getCurrentSession = snapshot
  api.trackEvent = (name, data, type = 'custom') => track(type, name, data)
  api.trackPageView = () => pageView()
  api.flush = () => whenReady().then(flush)

  api.setUserId = async (id) => {
    await whenReady()
    id = id == null ? '' : String(id)
    if (!id || id === state.uid) return identify()
    save({ uid: id, uidSid: null })
    return identify()
  }

  api.updateConsent = async (choices) => {
    await whenReady()
    const given = clean(choices)
    const before = { ...state.consent }
    save({ given: { ...state.given, ...given } })
    const body = { consent: given, gpc: gpc() }
    if (given.fingerprinting) {
      const fp = await fingerprint(win).catch(() => null)
      if (fp) body.fingerprint = fp
    }
    const data = await call('PUT', '', body)
    save({ consent: data.consent })
    if (before.analytics && !data.consent.analytics) {
      // Withdrawal takes effect at once: nothing queued under the old consent is sent.
      queue.clear()
      pending = []
    }
    if (!before.analytics && data.consent.analytics) {
      if (cfg.autoPageViews) pageView()
      flush()
    }
    identify()
    emit('consent', { ...data.consent })
    return { ...data.consent }
  }

  api.exportData = async () => {
    await whenReady()
    let session = null
    try {
      session = await call('GET', '')
    } catch (e) {
      fail('export', e)
    }
    return {
      format: 'spe-session-export',
      version: 1,
      exportedAt: iso(),
      anonymousId: state.aid,
      userId: state.uid || null,
      consent: { ...state.given },
      session,
      pendingEvents: queue.all(),
    }
  }

  // Start a session for a new visitor state; if the network is down, the next call creates it.
  async function replace(patch) {
    save({ sid: null, tok: null, exp: 0, uidSid: null, ...patch })
    try {
      await restore(null, null)
    } catch (e) {
      fail('session', e)
    }
  }

  api.importData = async (blob) => {
    const data = typeof blob === 'string' ? JSON.parse(blob) : blob
    if (!data || data.format !== 'spe-session-export' || typeof data.anonymousId !== 'string') {
      throw new Error('not a session manager export')
    }
    await whenReady()
    await flush()
    beacon()
    // Continue as the exported visitor: a new session under their anonymous id and choices.
    await replace({ aid: data.anonymousId, uid: data.userId || null, given: clean(data.consent) })
    if (allowed()) for (const e of Array.isArray(data.pendingEvents) ? data.pendingEvents : []) if (e && e.messageId) enqueue(e)
    await identify()
    return snapshot()
  }

  api.reset = async () => {
    await whenReady()
    // What the departing user did is delivered to their session before it ends.
    await flush()
    beacon()
    queue.clear()
    await call('POST', '/end', undefined, true).catch(() => {})
    await replace({ aid: null, uid: null })
    if (allowed() && cfg.autoPageViews) pageView()
    return snapshot()
  }

  api.on = (name, fn) => {
    ;(listeners[name] = listeners[name] || []).push(fn)
    if (name === 'ready' && ready) later(() => fn(snapshot()), 0)
    return () => {
      listeners[name] = listeners[name].filter((f) => f !== fn)
    }
  }

  // For tests and single-page apps that tear down: stop timers and listeners' effects.
  api.destroy = () => {
    cancel(hbTimer)
    cancel(flushTimer)
    cancel(retryTimer)
  }

  return api
}

const sessionManager = createSessionManager()
if (typeof window !== 'undefined' && !window.sessionManager) window.sessionManager = sessionManager

export default sessionManager
