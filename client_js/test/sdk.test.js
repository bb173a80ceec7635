// The SDK against a real server: REST helpers, live events, resume by seq after a dropped
// socket, idempotent resend, streaming with late join and stop, documents, typed errors.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import {
  ParleyClient, RestClient, AuthError, NotFoundError, ForbiddenError, ValidationError, ConflictError
} from '../src/sdk/index.js'
import { startServer } from './support/server.js'

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server
/** @type {ParleyClient[]} */
const clients = []

before(async () => { server = await startServer() })
after(async () => {
  for (const c of clients) c.close()
  await server?.stop()
})

/** @param {string} user @param {object} [options] */
async function connect (user, options = {}) {
  const c = new ParleyClient({ url: server.url, token: server.token(user, { name: user[0].toUpperCase() + user.slice(1) }), WebSocket, minBackoffMs: 50, ...options })
  clients.push(c)
  await c.connect()
  return c
}

/** Wait until `check()` is truthy (events arrive asynchronously). */
async function until (check, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = check()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

test('REST helpers: sessions, messages, participants, typed errors', async () => {
  const alice = await connect('alice')
  const s = await alice.rest.createSession({ title: 'Plans', tags: ['Demo'] })
  assert.equal(s.title, 'Plans')
  assert.deepEqual(s.tags, ['demo'])
  const posted = await alice.rest.postMessage(s.id, { text: 'via REST', client_id: 'k1' })
  assert.equal(posted.duplicate, false)
  const again = await alice.rest.postMessage(s.id, { text: 'via REST', client_id: 'k1' })
  assert.equal(again.duplicate, true)
  assert.equal(again.message.id, posted.message.id)
  const all = await alice.rest.allMessages(s.id)
  assert.deepEqual(all.map((m) => m.text), ['via REST'])
  const { items } = await alice.rest.listSessions({ tag: 'demo' })
  assert.ok(items.some((x) => x.id === s.id))
  assert.equal((await alice.rest.me()).id, 'alice')

  await assert.rejects(alice.rest.getSession('no-such-session'), NotFoundError)
  await assert.rejects(alice.rest.postMessage(s.id, { text: '   ' }), (err) => err instanceof ValidationError && err.status === 422)
  const bob = await connect('bob')
  await assert.rejects(bob.rest.deleteSession(s.id), (err) => err instanceof ForbiddenError && err.status === 403)
  const other = new ParleyClient({ url: server.url, token: 'not-a-token', WebSocket })
  await assert.rejects(other.rest.listSessions(), (err) => err instanceof AuthError && err.status === 401)
})

test('REST helpers for search, natural-language queries, analytics, insights and templates', async () => {
  // A tenant of its own, so the other tests' sessions do not count.
  const rest = new RestClient({ baseUrl: server.url, token: server.token('zoe', { tenant: 'intel', name: 'Zoe' }) })
  const made = await rest.createSessionFromTemplate({ template: 'retrospective', variables: { period: 'Sprint 7' } })
  assert.equal(made.title, 'Retrospective: Sprint 7')
  assert.ok((await rest.listTemplates()).items.some((t) => t.name === 'retrospective' && t.source === 'builtin'))
  assert.equal((await rest.getTemplate('retrospective')).variables.period.description.length > 0, true)
  await assert.rejects(rest.createSessionFromTemplate({ template: 'retrospective' }), (err) => err instanceof ValidationError && err.details.some((d) => d.field === 'variables.period'))

  const hits = await rest.search({ q: 'went well', kinds: ['message'] })
  assert.equal(hits.items.length, 1)
  assert.match(hits.items[0].snippet.html, /<mark>went<\/mark> <mark>well<\/mark>/)
  assert.deepEqual(hits.query.kinds, ['message'])
  const parsed = await rest.parseSearch('my conversations about sprints from today')
  assert.equal(parsed.query.participant, 'zoe')
  assert.ok(parsed.query.from)
  const same = await rest.searchQuery({ ...parsed.query, q: 'sprint' })
  assert.ok(same.items.every((h) => h.session.id === made.id))
  await assert.rejects(rest.search({ q: '!!!' }), ValidationError)

  const report = await rest.analytics({ scope: 'session', id: made.id, by: ['user'] })
  assert.equal(report.messages, 4)
  assert.deepEqual(report.breakdowns.user.map((g) => [g.key, g.label, g.messages]), [['zoe', 'Zoe', 4]])
  const csv = await rest.analyticsCsv({ scope: 'session', id: made.id })
  assert.match(csv, /^metric,value\n/)
  assert.match(csv, /\nmessages,4\n/)
  await assert.rejects(rest.analyticsCsv({ scope: 'planet' }), ValidationError)
  const insights = await rest.insights(made.id)
  assert.equal(insights.session, made.id)
})

test('a bad token fails connect with AuthError and does not reconnect', async () => {
  const c = new ParleyClient({ url: server.url, token: 'not-a-token', WebSocket, minBackoffMs: 10 })
  await assert.rejects(c.connect(), AuthError)
  assert.equal(c.state, 'closed')
})

test('live messages between two clients; edit, delete, typing, presence', async () => {
  const alice = await connect('alice')
  const bob = await connect('bob')
  const s = await alice.rest.createSession({ title: 'Live' })
  const subA = await alice.subscribe(s.id, { sinceSeq: 0 })
  const subB = await bob.subscribe(s.id)
  await until(() => subA.presence.has('bob'), 'bob present for alice')

  const got = subB.once('message.created', (d) => d.message.text === 'hi bob')
  const ack = await subA.send({ text: 'hi bob', clientId: 'c-1' })
  assert.equal(ack.duplicate, false)
  const created = await got
  assert.equal(created.message.author, 'alice')

  const dup = await subA.send({ text: 'hi bob', clientId: 'c-1' })
  assert.equal(dup.duplicate, true)

  const typing = subA.once('typing', (list) => list.some((t) => t.user_id === 'bob'))
  subB.setTyping(true)
  await typing

  const edited = subB.once('message.edited')
  await subA.edit(ack.message_id, { text: 'hi, bob' })
  assert.equal((await edited).message.text, 'hi, bob')
  await assert.rejects(subB.edit(ack.message_id, { text: 'mine now' }), ForbiddenError)

  const deleted = subB.once('message.deleted')
  await subA.delete(ack.message_id)
  assert.ok((await deleted).message.deleted_at)
  await assert.rejects(subA.delete(ack.message_id), ConflictError)
  await assert.rejects(alice.subscribe('missing-session'), NotFoundError)

  const left = subA.once('presence', (list) => !list.some((p) => p.user_id === 'bob'))
  await subB.unsubscribe()
  await left
})

test('reconnect resumes by seq and resends unacked sends exactly once', async () => {
  const alice = await connect('alice')
  const bob = await connect('bob')
  const s = await alice.rest.createSession({ title: 'Resume' })
  const subB = await bob.subscribe(s.id, { sinceSeq: 0 })
  await until(() => subB.lastSeq === 2, 'replay of the first two events')
  const seen = []
  subB.on('message.created', (d) => seen.push(d.message.text))

  const states = []
  bob.on('state', (st) => states.push(st))
  bob._ws.terminate() // the network drops
  await alice.rest.postMessage(s.id, { text: 'while you were away' })
  const pending = subB.send({ text: 'sent while offline', clientId: 'offline-1' })
  await until(() => bob.state === 'open', 'reconnected')
  const ack = await pending
  assert.equal(ack.duplicate, false)
  await until(() => seen.length === 2, 'both messages')
  assert.deepEqual(seen, ['while you were away', 'sent while offline'])
  assert.ok(states.includes('reconnecting'))
  const texts = (await alice.rest.allMessages(s.id)).map((m) => m.text)
  assert.deepEqual(texts, ['while you were away', 'sent while offline'])
})

test('streamed answers: deltas to everyone, text so far on join, stop', async () => {
  const alice = await connect('alice')
  const s = await alice.rest.createSession({ title: 'Stream' })
  await alice.rest.addAssistant(s.id, { name: 'helper', provider: 'scripted', model: 'scripted', trigger: 'manual', params: { tokens: 400, token_delay: 0.01 } })
  const subA = await alice.subscribe(s.id, { sinceSeq: 0 })
  const deltas = []
  subA.on('stream', (stream, kind) => { if (kind === 'delta') deltas.push(stream.text.length) })
  const ack = await subA.ask('helper', { text: 'go' })
  assert.equal(ack.status, 'started')
  await until(() => subA.streams.length === 1 && subA.streams[0].text.length > 40, 'some streamed text')

  // A late joiner gets the text so far, then the live deltas.
  const carol = await connect('carol')
  const subC = await carol.subscribe(s.id)
  await until(() => subC.streams.length === 1 && subC.streams[0].text.startsWith('[scripted] '), 'carol sees the text so far')

  const finished = subC.once('stream', (st, kind) => kind === 'finished')
  const stop = await subA.stop(ack.stream_id)
  assert.equal(stop.status, 'stopping')
  const done = await finished
  assert.equal(done.finishReason, 'cancelled')
  const answer = (await alice.rest.allMessages(s.id)).find((m) => m.id === done.messageId)
  assert.equal(answer.metadata.finish_reason, 'cancelled')
  assert.equal(answer.text, done.text)
  assert.ok(answer.text.length < 400 * 5, 'stopped before the end')
  assert.ok(deltas.length > 1)
  await assert.rejects(subA.stop(ack.stream_id), NotFoundError)
})

test('documents: annotations, replies, resolve and presence between two clients', async () => {
  const alice = await connect('alice')
  const bob = await connect('bob')
  const s = await alice.rest.createSession({ title: 'Doc' })
  const { message } = await alice.rest.postMessage(s.id, { text: 'annotate this sentence' })
  await bob.rest.postMessage(s.id, { text: 'bob joins as editor' })
  const docA = await alice.document(s.id)
  const docB = await bob.document(s.id)
  await docA.whenSynced()
  await docB.whenSynced()
  assert.equal(docA.role, 'owner')

  docA.setPresence({ viewing: message.id })
  docB.setPresence({ viewing: null })
  await until(() => docB.presence().some((p) => p.user.id === 'alice' && p.viewing === message.id), 'alice present for bob')
  const alicePresence = docB.presence().find((p) => p.user.id === 'alice')
  assert.equal(alicePresence.user.name, 'Alice')
  assert.ok(alicePresence.user.color)

  const id = docA.annotate({ messageId: message.id, range: { start: 9, end: 13 }, kind: 'comment', body: 'which one?' })
  const seen = await until(() => docB.annotations().find((a) => a.id === id), 'the annotation at bob')
  assert.deepEqual(seen.range, { start: 9, end: 13 })
  assert.equal(seen.author, 'alice')
  docB.reply(id, 'this one')
  await until(() => docA.annotations().find((a) => a.id === id)?.replies.length === 1, 'the reply at alice')
  docB.resolve(id)
  await until(() => docA.annotations().find((a) => a.id === id)?.resolved, 'resolved at alice')
  const rest = await alice.rest.listAnnotations(s.id)
  assert.equal(rest.items[0].replies[0].body, 'this one')

  await docB.close()
  await until(() => !docA.presence().some((p) => p.user.id === 'bob'), 'bob gone from presence')
})

test('documents: a viewer\'s change is refused and reported', async () => {
  const alice = await connect('alice')
  const dave = await connect('dave')
  const s = await alice.rest.createSession({ title: 'Read only' })
  const { message } = await alice.rest.postMessage(s.id, { text: 'look, do not touch' })
  const doc = await dave.document(s.id)
  await doc.whenSynced()
  assert.equal(doc.role, 'viewer')
  const refused = doc.once('refused')
  doc.annotate({ messageId: message.id, body: 'mine' })
  assert.match(await refused, /^forbidden/)
  assert.deepEqual((await alice.rest.listAnnotations(s.id)).items, [])
})
