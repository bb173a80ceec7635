// Pure parts without a server: the stream assembly rule and the conversation tree.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { StreamAssembler } from '../src/sdk/streams.js'
import { ConversationTree } from '../src/app/tree.js'

function assembler () {
  const changes = []
  let snapshots = 0
  const a = new StreamAssembler({ onChange: (s, kind) => changes.push([kind, s.text]), requestSnapshot: () => { snapshots++ } })
  return { a, changes, snapshots: () => snapshots }
}
const ev = (event, data) => ({ event, data })

test('deltas that follow on are appended, duplicates dropped, in bytes not characters', () => {
  const { a } = assembler()
  a.handle(ev('stream.started', { stream_id: 's', assistant: { name: 'helper' }, prompt_id: 'p' }))
  a.handle(ev('stream.delta', { stream_id: 's', offset: 0, end: 4, text: 'h\u00e9 ' })) // é is 2 bytes
  a.handle(ev('stream.delta', { stream_id: 's', offset: 0, end: 4, text: 'h\u00e9 ' }))
  a.handle(ev('stream.delta', { stream_id: 's', offset: 4, end: 9, text: 'there' }))
  assert.equal(a.running()[0].text, 'h\u00e9 there')
  assert.equal(a.running()[0].end, 9)
})

test('a gap holds the delta and asks for one snapshot; held deltas apply after it', () => {
  const { a, snapshots } = assembler()
  a.handle(ev('stream.delta', { stream_id: 's', offset: 10, end: 15, text: 'world' }))
  a.handle(ev('stream.delta', { stream_id: 's', offset: 15, end: 16, text: '!' }))
  assert.equal(snapshots(), 1)
  assert.equal(a.running().length, 0)
  a.handle(ev('stream.snapshot', { streams: [{ stream_id: 's', assistant: { name: 'helper' }, prompt_id: 'p', text: 'hello ', length: 6 }] }))
  // The snapshot ends at 6 and the held delta starts at 10: still missing, not applied.
  assert.equal(a.running()[0].text, 'hello ')
  a.handle(ev('stream.snapshot', { streams: [{ stream_id: 's', text: 'hello big ', length: 10 }] }))
  assert.equal(a.running()[0].text, 'hello big world!')
  assert.equal(a.running()[0].end, 16)
})

test('the answer message ends the stream with the stored text; later frames are ignored', () => {
  const { a, changes } = assembler()
  a.handle(ev('stream.started', { stream_id: 's' }))
  a.handle(ev('stream.delta', { stream_id: 's', offset: 0, end: 3, text: 'abc' }))
  a.handle(ev('message.created', { message: { id: 'm', text: 'abc', metadata: { stream_id: 's', finish_reason: 'cancelled' } } }))
  a.handle(ev('stream.delta', { stream_id: 's', offset: 3, end: 4, text: 'd' }))
  a.handle(ev('stream.finished', { stream_id: 's', finish_reason: 'cancelled', message_id: 'm' }))
  assert.equal(a.running().length, 0)
  assert.deepEqual(changes.at(-1), ['finished', 'abc'])
  assert.equal(changes.filter(([k]) => k === 'finished').length, 1)
})

const msg = (id, seq, parent = null, metadata = {}) => ({ id, seq, parent_id: parent, metadata })

test('tree: siblings from edits, newest leaf, paths, linear chats without parents', () => {
  const t = ConversationTree.from([
    msg('a', 3), msg('b', 4), // b has no parent: it follows a
    msg('c', 5, 'b'), msg('c2', 7, 'b'), // an edit of c: a sibling
    msg('d', 8, 'c'), msg('r', 9, null, { root: true }) // a new first message
  ])
  assert.deepEqual(t.path('d').map((m) => m.id), ['a', 'b', 'c', 'd'])
  assert.deepEqual(t.siblings('c').map((m) => m.id), ['c', 'c2'])
  assert.deepEqual(t.siblings('r').map((m) => m.id), ['a', 'r'])
  assert.equal(t.newestLeaf('c'), 'd')
  assert.equal(t.newestLeaf('b'), 'd')
  assert.equal(t.newestLeaf(null), 'r')
  assert.ok(t.isAncestor('b', 'd'))
  assert.ok(!t.isAncestor('c2', 'd'))
  assert.equal(t.forks(), 2)
  // An edit replaces the message in place, keeping its place in the tree.
  t.add({ ...msg('c', 5, 'b'), text: 'changed' })
  assert.equal(/** @type {any} */ (t.byId.get('c')).text, 'changed')
  assert.deepEqual(t.path('d').map((m) => m.id), ['a', 'b', 'c', 'd'])
})

test('the dashboard writes counts, times and small LLM costs readably', async () => {
  const { num, millis, millisPair, seconds, money, dayRange } = await import('../src/app/format.js')
  assert.equal(num(12345), '12,345')
  assert.equal(millis(null), '–')
  assert.equal(millis(93.4), '93 ms')
  assert.equal(millis(1520), '1.52 s')
  assert.equal(millisPair(76, 617), '76 / 617 ms')
  assert.equal(millisPair(900, 2500), '0.90 / 2.50 s')
  assert.equal(seconds(42), '42 s')
  assert.equal(seconds(150), '2.5 min')
  assert.equal(seconds(7200), '2.0 h')
  assert.equal(money({ total: 0.0000321, currency: 'USD', priced_generations: 1 }), '$0.000032')
  assert.equal(money({ total: 0.00102, currency: 'USD', priced_generations: 2 }), '$0.0010')
  assert.equal(money({ total: 12.4, currency: 'EUR', priced_generations: 2 }), '12.40 EUR')
  assert.equal(money({ total: 0, currency: 'USD', priced_generations: 1 }), '$0')
  assert.equal(money({ total: 0, currency: null, priced_generations: 0 }), '–', 'no price is not a price of 0')
  assert.deepEqual(dayRange('2026-02-27', '2026-03-02'), ['2026-02-27', '2026-02-28', '2026-03-01', '2026-03-02'])
  assert.deepEqual(dayRange('2026-03-02', '2026-03-01'), [])
})

test('template titles preview with the values given; search syntax is not parsed as a sentence', async () => {
  const { renderPattern } = await import('../src/app/new-session.js')
  const { wantsParse } = await import('../src/app/search.js')
  assert.equal(renderPattern('Retrospective: ${period}', { period: 'Sprint 42' }), 'Retrospective: Sprint 42')
  assert.equal(renderPattern('Support: $customer - ${issue}', { customer: 'Acme' }), 'Support: Acme - ${issue}')
  assert.equal(wantsParse('my conversations about AI from last week'), true)
  assert.equal(wantsParse('"release notes" draft'), false)
  assert.equal(wantsParse('invoice -draft'), false)
  assert.equal(wantsParse('follow-up'), true)
})
