// Unit tests of the session manager's queue and batching logic (node --test).
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { backoff, chunk, createQueue, createStore, uuid } from '../../static/session/session-manager.js'
import { FakeServer, fakeBrowser, memoryStore } from './harness.mjs'

const OPTS = { siteKey: 'pk_test', flushInterval: 5000, batchSize: 5, autoPageViews: false, retryBase: 1000, retryMax: 8000 }

async function consented(opts = {}, browserOpts = {}) {
  const b = fakeBrowser(browserOpts)
  await b.manager.init({ ...OPTS, consent: { analytics: true }, ...opts })
  await b.settle()
  return b
}

describe('queue', () => {
  test('keeps events in order and persists them for the next page', () => {
    const store = memoryStore()
    const q = createQueue(store, 'q', 10)
    q.push({ messageId: 'a' })
    q.push({ messageId: 'b' })
    assert.deepEqual(
      createQueue(store, 'q', 10)
        .all()
        .map((e) => e.messageId),
      ['a', 'b'],
    )
  })

  test('drops the oldest events past its cap and reports them', () => {
    const q = createQueue(memoryStore(), 'q', 3)
    for (const id of ['a', 'b', 'c']) assert.deepEqual(q.push({ messageId: id }), [])
    const dropped = q.push({ messageId: 'd' })
    assert.deepEqual(
      dropped.map((e) => e.messageId),
      ['a'],
    )
    assert.deepEqual(
      q.all().map((e) => e.messageId),
      ['b', 'c', 'd'],
    )
  })

  test('removes acknowledged events by messageId only', () => {
    const q = createQueue(memoryStore(), 'q', 10)
    for (const id of ['a', 'b', 'c']) q.push({ messageId: id })
    q.remove(['a', 'c', 'zzz'])
    assert.deepEqual(
      q.all().map((e) => e.messageId),
      ['b'],
    )
  })

  test('treats corrupted storage as an empty queue', () => {
    const store = memoryStore()
    store.data.set('q', '{not json')
    assert.deepEqual(createQueue(store, 'q').all(), [])
    store.data.set('q', '{"an":"object"}')
    assert.deepEqual(createQueue(store, 'q').all(), [])
  })

  test('a store without localStorage falls back to memory and says so', () => {
    const store = createStore({})
    assert.equal(store.kind, 'memory')
    store.set('k', { a: 1 })
    assert.deepEqual(store.get('k'), { a: 1 })
  })

  test('a store falls back to a cookie when localStorage throws', () => {
    const doc = { cookie: '' }
    const win = {
      document: doc,
      navigator: { cookieEnabled: true },
      location: { protocol: 'https:' },
      get localStorage() {
        throw new Error('SecurityError')
      },
    }
    const store = createStore(win)
    assert.equal(store.kind, 'cookie')
    store.set('spe:pk_1', { sid: 's' }, true)
    assert.match(doc.cookie, /^spe_pk_1=.*; Path=\/; Max-Age=31536000; SameSite=Lax; Secure$/)
    const fresh = createStore(win)
    doc.cookie = doc.cookie.split(';')[0]
    assert.deepEqual(fresh.get('spe:pk_1'), { sid: 's' })
  })
})

describe('helpers', () => {
  test('messageIds are distinct version 4 UUIDs, with or without randomUUID', () => {
    const seen = new Set()
    for (let i = 0; i < 200; i++) seen.add(uuid(i % 2 ? globalThis.crypto : { getRandomValues: (b) => globalThis.crypto.getRandomValues(b) }))
    assert.equal(seen.size, 200)
    for (const id of seen) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  })

  test('backoff doubles per attempt, stays within half and all of the step, and is capped', () => {
    assert.equal(backoff(0, 1000, 60000, () => 0), 500)
    assert.equal(backoff(0, 1000, 60000, () => 1), 1000)
    assert.equal(backoff(3, 1000, 60000, () => 1), 8000)
    assert.equal(backoff(20, 1000, 60000, () => 1), 60000)
    assert.equal(backoff(500, 1000, 60000, () => 0.5), 45000)
  })

  test('chunk keeps order and keeps each body under the byte limit', () => {
    const events = Array.from({ length: 50 }, (_, i) => ({ messageId: String(i), eventData: { pad: 'x'.repeat(200) } }))
    const parts = chunk(events, { token: 't' }, 2000)
    assert.ok(parts.length > 1)
    assert.deepEqual(parts.flat(), events)
    for (const p of parts) assert.ok(JSON.stringify({ token: 't', events: p }).length <= 2000)
  })

  test('chunk sends an event larger than the limit on its own', () => {
    const big = { messageId: 'big', eventData: { pad: 'x'.repeat(5000) } }
    assert.deepEqual(chunk([{ messageId: 'a' }, big, { messageId: 'b' }], {}, 1000), [[{ messageId: 'a' }], [big], [{ messageId: 'b' }]])
  })
})

describe('batching', () => {
  test('a full batch is sent at once, in one request', async () => {
    const b = await consented()
    const ids = [1, 2, 3, 4, 5].map((i) => b.manager.trackEvent('click', { i }))
    await b.settle()
    const sent = b.server.sent('events')
    assert.equal(sent.length, 1)
    assert.deepEqual(
      sent[0].body.events.map((e) => e.messageId),
      ids,
    )
    assert.ok(sent[0].body.sentAt)
    assert.deepEqual(b.manager.getCurrentSession().queued, 0)
  })

  test('a partial batch waits for the flush interval', async () => {
    const b = await consented()
    b.manager.trackEvent('click')
    b.manager.trackEvent('scroll')
    await b.advance(4900)
    assert.equal(b.server.sent('events').length, 0)
    await b.advance(200)
    assert.equal(b.server.sent('events').length, 1)
    assert.equal(b.server.stored.size, 2)
  })

  test('events carry type, name, data, page and an ISO timestamp', async () => {
    const b = await consented()
    b.manager.trackEvent('signup', { plan: 'pro' }, 'conversion')
    await b.advance(5000)
    const [e] = b.server.sent('events')[0].body.events
    assert.equal(e.eventType, 'conversion')
    assert.equal(e.eventName, 'signup')
    assert.deepEqual(e.eventData, { plan: 'pro' })
    assert.deepEqual(e.page, { url: 'https://shop.example/products?utm_source=mail', path: '/products', title: 'Products', referrer: 'https://news.example/' })
    assert.match(e.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  })

  test('more than a batch drains in consecutive requests of at most batchSize', async () => {
    const b = await consented()
    b.server.offline = true
    for (let i = 0; i < 12; i++) b.manager.trackEvent('e', { i })
    await b.settle()
    b.server.offline = false
    await b.advance(10000)
    const sizes = b.server.sent('events').map((r) => r.body.events.length)
    assert.ok(sizes.every((n) => n <= 5))
    assert.equal(b.server.stored.size, 12)
    assert.equal(b.manager.getCurrentSession().queued, 0)
  })

  test('offline: events stay queued, are retried with growing delays, and are stored once', async () => {
    const b = await consented()
    b.server.offline = true
    const errors = []
    b.manager.on('error', (e) => errors.push(e))
    for (let i = 0; i < 5; i++) b.manager.trackEvent('e', { i })
    await b.settle()
    const times = []
    for (let i = 0; i < 4; i++) {
      const before = b.server.sent('events').length
      let waited = 0
      while (b.server.sent('events').length === before) {
        await b.advance(100)
        waited += 100
      }
      times.push(waited)
    }
    assert.ok(times[3] > times[0], `delays should grow: ${times}`)
    assert.ok(times.every((w) => w <= 8000 + 100))
    assert.equal(b.manager.getCurrentSession().queued, 5)
    assert.ok(errors.every((e) => e.type === 'send' && e.status === 0))
    b.server.offline = false
    await b.advance(9000)
    assert.equal(b.server.stored.size, 5)
    assert.equal(b.manager.getCurrentSession().queued, 0)
    // Every attempt carried the same messageIds: retries are idempotent.
    const idsPerAttempt = new Set(b.server.sent('events').map((r) => r.body.events.map((e) => e.messageId).join()))
    assert.equal(idsPerAttempt.size, 1)
  })

  test('a lost response is retried with the same messageIds and counted as duplicates', async () => {
    const b = await consented()
    const flushed = []
    b.manager.on('flush', (r) => flushed.push(r))
    // The server stores the batch but the answer never arrives.
    const handle = b.server.handle.bind(b.server)
    b.server.handle = (u, init) => {
      handle(u, init)
      b.server.handle = handle
      throw new TypeError('connection reset')
    }
    for (let i = 0; i < 5; i++) b.manager.trackEvent('e', { i })
    await b.advance(10000)
    assert.equal(b.server.stored.size, 5)
    assert.deepEqual(
      flushed.map((f) => [f.stored, f.duplicates]),
      [[0, 5]],
    )
  })

  test('the online event retries at once instead of waiting out the backoff', async () => {
    const b = await consented({ retryBase: 30000, retryMax: 60000 })
    b.server.offline = true
    for (let i = 0; i < 5; i++) b.manager.trackEvent('e')
    await b.settle()
    b.server.offline = false
    await b.advance(100)
    assert.equal(b.server.stored.size, 0)
    b.fire('window', 'online')
    await b.settle()
    assert.equal(b.server.stored.size, 5)
  })

  test('the queue survives a reload: the next page sends what the last one could not', async () => {
    const server = new FakeServer()
    const store = memoryStore()
    const first = fakeBrowser({ server, store })
    await first.manager.init({ ...OPTS, consent: { analytics: true } })
    server.offline = true
    first.manager.trackEvent('left-behind')
    await first.settle()
    first.manager.destroy()
    server.offline = false
    const second = fakeBrowser({ server, store })
    await second.manager.init({ ...OPTS, consent: { analytics: true } })
    second.manager.trackEvent('next-page')
    await second.advance(5000)
    assert.deepEqual([...server.stored.values()].map((s) => s.event.eventName).sort(), ['left-behind', 'next-page'])
    assert.equal(server.sent('create').length, 1, 'the live session is reused without a new create')
  })

  test('a rejected event is isolated by halving the batch and dropped alone', async () => {
    const b = await consented({ batchSize: 10 })
    const errors = []
    b.manager.on('error', (e) => errors.push(e))
    const ids = [0, 1, 2, 3, 4].map((i) => b.manager.trackEvent('e', { i }))
    b.server.rejectMessageIds.add(ids[3])
    await b.advance(5000)
    assert.deepEqual([...b.server.stored.keys()].sort(), [ids[0], ids[1], ids[2], ids[4]].sort())
    assert.equal(errors.length, 1)
    assert.equal(errors[0].type, 'rejected')
    assert.deepEqual(errors[0].messageIds, [ids[3]])
    assert.equal(b.manager.getCurrentSession().queued, 0)
  })

  test('the offline queue is capped and reports what it dropped', async () => {
    const b = await consented({ maxQueue: 3, batchSize: 10 })
    b.server.offline = true
    const errors = []
    b.manager.on('error', (e) => errors.push(e))
    for (let i = 0; i < 5; i++) b.manager.trackEvent('e', { i })
    assert.equal(b.manager.getCurrentSession().queued, 3)
    assert.equal(errors.filter((e) => e.type === 'queue_full').length, 2)
    b.server.offline = false
    await b.advance(20000)
    assert.deepEqual([...b.server.stored.values()].map((s) => s.event.eventData.i), [2, 3, 4])
  })
})

describe('session', () => {
  for (const status of [401, 409]) {
    test(`a ${status} restores the session and resends the batch to it`, async () => {
      const b = await consented()
      const first = b.manager.getSessionId()
      b.server.sessions.get(first).alive = false
      if (status === 409) b.server.failNext.push(409)
      const ids = [0, 1, 2, 3, 4].map(() => b.manager.trackEvent('e'))
      await b.settle()
      const second = b.manager.getSessionId()
      assert.notEqual(second, first)
      const restore = b.server.sent('create').at(-1).body.restore
      assert.equal(restore.sessionId, first)
      for (const id of ids) assert.equal(b.server.stored.get(id).sessionId, second)
      assert.equal(b.server.sessions.get(second).anonymousId, b.server.sessions.get(first).anonymousId)
    })
  }

  test('a rotated token from a heartbeat is used from the next request on', async () => {
    const b = await consented({ heartbeatInterval: 1000 })
    b.server.rotateOnHeartbeat = true
    b.fire('window', 'pointerdown')
    await b.advance(1000)
    const sid = b.manager.getSessionId()
    assert.equal(b.server.sent('activity').length, 1)
    b.manager.trackEvent('after-rotation')
    await b.advance(5000)
    const req = b.server.sent('events').at(-1)
    assert.equal(req.headers.Authorization, `Bearer ${b.server.sessions.get(sid).token}`)
    assert.equal(b.store.get('spe:pk_test').tok, b.server.sessions.get(sid).token)
  })

  test('heartbeats only while the page is visible and the visitor active', async () => {
    const b = await consented({ heartbeatInterval: 1000 })
    await b.advance(3000)
    assert.equal(b.server.sent('activity').length, 0, 'idle visitor: no heartbeat')
    b.fire('window', 'keydown')
    await b.advance(1000)
    assert.equal(b.server.sent('activity').length, 1)
    b.window.document.visibilityState = 'hidden'
    b.fire('window', 'mousemove')
    await b.advance(3000)
    assert.equal(b.server.sent('activity').length, 1, 'hidden page: no heartbeat')
  })

  test('a page hide hands the queue to sendBeacon as text with the token', async () => {
    const b = await consented()
    const ids = [b.manager.trackEvent('a'), b.manager.trackEvent('b')]
    b.fire('window', 'pagehide')
    assert.equal(b.beacons.length, 1)
    const [beacon] = b.beacons
    assert.equal(beacon.url, `/api/sessions/${b.manager.getSessionId()}/events`)
    assert.equal(beacon.body.token, b.store.get('spe:pk_test').tok)
    assert.deepEqual(
      beacon.body.events.map((e) => e.messageId),
      ids,
    )
    assert.equal(b.manager.getCurrentSession().queued, 0)
  })

  test('after a failed send, beaconed events also stay queued for the next page', async () => {
    const b = await consented()
    b.server.offline = true
    b.manager.trackEvent('a')
    await b.advance(5000)
    b.fire('window', 'pagehide')
    assert.equal(b.beacons.length, 1)
    assert.equal(b.manager.getCurrentSession().queued, 1)
  })

  test('events stay queued when the browser refuses the beacon', async () => {
    const b = await consented()
    b.window.navigator.beaconResult = false
    b.manager.trackEvent('a')
    b.fire('window', 'pagehide')
    assert.equal(b.manager.getCurrentSession().queued, 1)
  })
})

describe('consent', () => {
  test('opt-in without a choice: only the session is created, events are dropped', async () => {
    const b = fakeBrowser()
    b.manager.trackEvent('before-ready')
    await b.manager.init({ ...OPTS, autoPageViews: true })
    assert.equal(b.manager.trackEvent('after-ready'), null)
    b.fire('window', 'keydown')
    await b.advance(120000)
    b.fire('window', 'pagehide')
    assert.deepEqual(
      b.server.requests.map((r) => r.path),
      ['create'],
    )
    assert.equal(b.beacons.length, 0)
    assert.equal(b.server.sent('create')[0].body.consent, undefined)
  })

  test('granting analytics starts tracking with a page view of the current page', async () => {
    const b = fakeBrowser()
    await b.manager.init({ ...OPTS, autoPageViews: true })
    const seen = []
    b.manager.on('consent', (c) => seen.push(c))
    const consent = await b.manager.updateConsent({ analytics: true })
    assert.equal(consent.analytics, true)
    await b.advance(5000)
    const events = [...b.server.stored.values()].map((s) => s.event)
    assert.deepEqual(
      events.map((e) => e.eventType),
      ['page_view'],
    )
    assert.equal(seen.length, 1)
  })

  test('withdrawing analytics drops what is queued and sends nothing more', async () => {
    const b = await consented()
    b.manager.trackEvent('queued')
    await b.manager.updateConsent({ analytics: false })
    assert.equal(b.manager.getCurrentSession().queued, 0)
    assert.equal(b.manager.trackEvent('later'), null)
    await b.advance(10000)
    assert.equal(b.server.stored.size, 0)
  })

  test('opt-out mode: the server default lets events flow without a choice', async () => {
    const b = fakeBrowser({ server: new FakeServer({ consentMode: 'opt-out' }) })
    await b.manager.init(OPTS)
    b.manager.trackEvent('e')
    await b.advance(5000)
    assert.equal(b.server.stored.size, 1)
  })

  test('Global Privacy Control is sent and overrides sale/sharing and marketing', async () => {
    const b = fakeBrowser({ gpc: true })
    await b.manager.init({ ...OPTS, consent: { analytics: true, saleSharing: true, marketing: true } })
    const create = b.server.sent('create')[0].body
    assert.equal(create.gpc, true)
    assert.deepEqual(create.consent, { analytics: true, marketing: false, saleSharing: false })
    const consent = await b.manager.updateConsent({ saleSharing: true })
    assert.equal(consent.saleSharing, false)
    assert.equal(b.server.requests.at(-1).body.gpc, true)
  })

  test('no fingerprint is computed or sent without fingerprinting consent', async () => {
    const b = await consented()
    await b.manager.updateConsent({ personalization: true })
    assert.ok(b.server.requests.every((r) => !r.body || !('fingerprint' in r.body)))
    await b.manager.updateConsent({ fingerprinting: true })
    const fp = b.server.requests.at(-1).body.fingerprint
    assert.match(fp.hash, /^[0-9a-f]{64}$/)
    assert.deepEqual(Object.keys(fp.components).sort(), ['cores', 'languages', 'pixelRatio', 'platform', 'screen', 'timezone', 'touchPoints'])
  })
})

describe('pages and identity', () => {
  test('single-page navigation records one page view per new path', async () => {
    const b = await consented({ autoPageViews: true })
    b.window.history.pushState({}, '', '/cart')
    b.window.history.replaceState({}, '', '/cart')
    b.window.history.pushState({}, '', '/checkout?step=2')
    await b.advance(5000)
    const views = [...b.server.stored.values()].map((s) => s.event).filter((e) => e.eventType === 'page_view')
    assert.deepEqual(
      views.map((e) => e.page.path),
      ['/products', '/cart', '/checkout'],
    )
    assert.equal(views[2].page.referrer, 'https://shop.example/cart')
  })

  test('reset forgets the user and starts a new anonymous visitor; events before it go to the old session', async () => {
    const b = await consented()
    await b.manager.setUserId('user-42')
    const before = b.manager.getCurrentSession()
    const id = b.manager.trackEvent('before-logout')
    await b.manager.reset()
    const after = b.manager.getCurrentSession()
    assert.notEqual(after.sessionId, before.sessionId)
    assert.notEqual(after.anonymousId, before.anonymousId)
    assert.equal(after.userId, null)
    assert.equal(b.server.stored.get(id).sessionId, before.sessionId)
    assert.equal(b.server.sessions.get(before.sessionId).alive, false)
  })

  test('export and import carry the visitor to another browser without the token', async () => {
    const a = await consented()
    await a.manager.setUserId('user-7')
    a.server.offline = true
    const pendingId = a.manager.trackEvent('pending')
    await a.settle()
    a.server.offline = false
    const blob = await a.manager.exportData()
    assert.equal(JSON.stringify(blob).includes(a.store.get('spe:pk_test').tok), false)
    assert.equal(blob.userId, 'user-7')
    const b = fakeBrowser({ server: a.server })
    await b.manager.init({ ...OPTS })
    const after = await b.manager.importData(JSON.stringify(blob))
    assert.equal(after.anonymousId, blob.anonymousId)
    await b.advance(5000)
    assert.ok(a.server.stored.has(pendingId))
    assert.equal(a.server.sessions.get(after.sessionId).userId, 'user-7')
    await assert.rejects(b.manager.importData({ format: 'other' }), /not a session manager export/)
  })
})
