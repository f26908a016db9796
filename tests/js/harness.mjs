// A fake browser and a fake server for unit tests of the session manager: a virtual
// clock, an in-memory store, and an API that behaves like sessions_app's (token
// rotation, restore, idempotent events by messageId) with switches for failures.
import { createSessionManager } from '../../static/session/session-manager.js'

export function memoryStore() {
  const data = new Map()
  return {
    kind: 'memory',
    data,
    get(k) {
      try {
        return JSON.parse(data.get(k))
      } catch {
        return null
      }
    },
    set: (k, v) => (v == null ? data.delete(k) : data.set(k, JSON.stringify(v))),
  }
}

export class FakeServer {
  constructor({ consentMode = 'opt-in' } = {}) {
    this.consentMode = consentMode
    this.sessions = new Map() // id -> {token, previous, alive, consent, anonymousId}
    this.stored = new Map() // messageId -> {event, sessionId}
    this.requests = []
    this.offline = false
    this.failNext = [] // statuses to answer next, in order
    this.rotateOnHeartbeat = false
    this.rejectMessageIds = new Set()
    this.seq = 0
  }

  defaults() {
    const on = this.consentMode === 'opt-out'
    return { analytics: on, personalization: on, marketing: on, fingerprinting: false, saleSharing: on }
  }

  resolve(given, previous, gpc) {
    const c = { ...this.defaults(), ...previous, ...given }
    if (gpc) c.saleSharing = c.marketing = false
    return c
  }

  newSession(anonymousId, consent) {
    const id = `00000000-0000-4000-8000-${String(++this.seq).padStart(12, '0')}`
    const token = `tok-${this.seq}`
    this.sessions.set(id, { token, alive: true, consent, anonymousId: anonymousId || `anon-${this.seq}` })
    return id
  }

  created(id, restored) {
    const s = this.sessions.get(id)
    return { sessionId: id, token: s.token, anonymousId: s.anonymousId, expiresAt: 'x', idleTimeoutSeconds: 1800, restored, consent: s.consent }
  }

  auth(id, headers) {
    const s = this.sessions.get(id)
    const token = (headers.Authorization || '').replace('Bearer ', '')
    if (!s || (token !== s.token && token !== s.previous)) return [401, null]
    if (!s.alive) return [401, null]
    return [200, s]
  }

  handle(url, init) {
    const path = url.replace(/^.*\/api\/sessions\//, '')
    const body = init.body ? JSON.parse(init.body) : null
    this.requests.push({ method: init.method, path, body, headers: init.headers })
    if (this.offline) throw new TypeError('Failed to fetch')
    if (this.failNext.length) return [this.failNext.shift(), { detail: 'injected' }]
    if (path === 'create') {
      const r = body.restore
      const prev = r && this.sessions.get(r.sessionId)
      if (prev && (prev.token === r.token || prev.previous === r.token)) {
        if (prev.alive) return [201, this.created(r.sessionId, true)]
        return [201, this.created(this.newSession(prev.anonymousId, this.resolve(body.consent, prev.consent, body.gpc)), false)]
      }
      return [201, this.created(this.newSession(body.anonymousId, this.resolve(body.consent, null, body.gpc)), false)]
    }
    const [id, sub] = path.split('/')
    const [status, s] = this.auth(id, init.headers)
    if (status !== 200) return [status, { detail: 'expired' }]
    if (sub === 'events') {
      let stored = 0
      let duplicates = 0
      if (body.events.some((e) => this.rejectMessageIds.has(e.messageId))) {
        return [400, { detail: 'invalid', errors: { 'events[0].eventType': ['bad'] } }]
      }
      for (const e of body.events) {
        if (this.stored.has(e.messageId)) duplicates++
        else {
          stored++
          this.stored.set(e.messageId, { event: e, sessionId: id })
        }
      }
      return [200, { stored, duplicates, anonymous: 0 }]
    }
    if (sub === 'activity') {
      const out = { sessionId: id, expiresAt: 'x' }
      if (this.rotateOnHeartbeat) {
        s.previous = s.token
        s.token = `${s.token}-r`
        out.token = s.token
      }
      return [200, out]
    }
    if (sub === 'end') {
      s.alive = false
      return [200, {}]
    }
    if (init.method === 'PUT') {
      if (body.consent) s.consent = this.resolve(body.consent, s.consent, body.gpc)
      if (body.userId) s.userId = body.userId
      return [200, { sessionId: id, consent: s.consent, traits: {} }]
    }
    if (init.method === 'GET') return [200, { sessionId: id, consent: s.consent }]
    return [404, { detail: 'no route' }]
  }

  // Requests of one kind, e.g. server.sent('events').
  sent(sub) {
    return this.requests.filter((r) => (sub === 'create' ? r.path === 'create' : r.path.endsWith(`/${sub}`)))
  }
}

export function fakeBrowser({ server = new FakeServer(), store = memoryStore(), href = 'https://shop.example/products?utm_source=mail', gpc } = {}) {
  let t = 1_700_000_000_000
  let seq = 0
  const timers = new Map()
  const listeners = {}
  const beacons = []
  const target = (name) => ({
    addEventListener: (ev, fn) => (listeners[`${name}:${ev}`] = listeners[`${name}:${ev}`] || []).push(fn),
  })
  const url = new URL(href)
  const location = {
    get href() {
      return url.href
    },
    get pathname() {
      return url.pathname
    },
    get search() {
      return url.search
    },
  }
  const history = {
    pushState(_s, _t, to) {
      url.href = new URL(to, url.href).href
    },
    replaceState(_s, _t, to) {
      url.href = new URL(to, url.href).href
    },
  }
  const document = { ...target('document'), title: 'Products', referrer: 'https://news.example/', visibilityState: 'visible' }
  const window = {
    ...target('window'),
    document,
    location,
    history,
    crypto: globalThis.crypto,
    screen: { width: 1280, height: 800, colorDepth: 24 },
    devicePixelRatio: 1,
    navigator: {
      languages: ['en-GB'],
      platform: 'Linux x86_64',
      hardwareConcurrency: 4,
      maxTouchPoints: 0,
      globalPrivacyControl: gpc,
      beaconResult: true,
      sendBeacon(u, body) {
        beacons.push({ url: u, body: JSON.parse(body) })
        return this.beaconResult
      },
    },
    async fetch(u, init) {
      const [status, data] = server.handle(u, init)
      return { ok: status >= 200 && status < 300, status, statusText: String(status), json: async () => data }
    },
  }
  const env = {
    window,
    store,
    now: () => t,
    setTimeout: (fn, ms) => {
      timers.set(++seq, { at: t + ms, fn })
      return seq
    },
    clearTimeout: (id) => timers.delete(id),
  }
  const settle = async () => {
    for (let i = 0; i < 30; i++) await new Promise((r) => setImmediate(r))
  }
  return {
    server,
    store,
    window,
    beacons,
    manager: createSessionManager(env),
    settle,
    // Move the virtual clock forward, firing due timers in order.
    async advance(ms) {
      const end = t + ms
      for (;;) {
        await settle()
        const due = [...timers.entries()].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at)[0]
        if (!due) break
        timers.delete(due[0])
        t = Math.max(t, due[1].at)
        due[1].fn()
      }
      t = end
      await settle()
    },
    fire(name, ev) {
      for (const fn of listeners[`${name}:${ev}`] || []) fn({ type: ev })
    },
  }
}
