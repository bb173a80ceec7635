// The session timeline: every durable event, newest last, grouped by day.

import { h, fill, icon, avatar, clockTime } from './dom.js'

/** @type {Record<string, [string, any]>} */
const KINDS = {
  'session.created': ['created the session', 'plus'],
  'session.updated': ['changed the session', 'edit'],
  'participant.joined': ['joined', 'user'],
  'participant.updated': ['changed a role', 'user'],
  'participant.left': ['left', 'user'],
  'message.created': ['wrote', 'chat'],
  'message.edited': ['edited a message', 'edit'],
  'message.deleted': ['deleted a message', 'trash'],
  'annotation.created': ['annotated', 'highlight'],
  'annotation.resolved': ['resolved a discussion', 'check']
}

/**
 * @param {import('../sdk/index.js').ParleyClient} client
 * @param {string} sessionId
 * @param {(id: string) => {id: string, name: string, kind: string}} person
 * @param {(messageId: string) => void} open
 */
export function timelineView (client, sessionId, person, open) {
  const list = h('ol.timeline')
  const el = h('div.timeline-view', h('div.view-intro', h('h2', 'Timeline'), h('p.muted', 'Everything that happened in this session, in order.')), list)
  let lastDay = ''
  let lastSeq = 0

  /** @param {any} f */
  function add (f) {
    if (f.seq <= lastSeq) return
    lastSeq = f.seq
    const day = new Date(f.ts).toDateString()
    if (day !== lastDay) {
      lastDay = day
      list.appendChild(h('li.tl-day', new Date(f.ts).toLocaleDateString([], { weekday: 'long', day: 'numeric', month: 'long' })))
    }
    const [verb, ic] = KINDS[f.event] || [f.event, 'sparkle']
    const subject = f.event.startsWith('participant.') ? (d => d.participant?.user_id || d.user_id)(f.data || {}) : null
    const who = person(subject || f.actor || '?')
    const d = f.data || {}
    let detail = null
    if (f.event === 'message.created' || f.event === 'message.edited') {
      detail = h('button.tl-quote', { on: { click: () => open(d.message.id) } }, d.message.text.slice(0, 140) + (d.message.text.length > 140 ? '…' : ''))
      if (d.message.metadata?.edit_of) detail.prepend(h('span.badge', 'branch'), ' ')
    } else if (f.event === 'participant.joined' || f.event === 'participant.updated') {
      detail = h('span.muted.small', `as ${d.participant.role}${f.actor && f.actor !== d.participant.user_id ? `, added by ${person(f.actor).name}` : ''}`)
    } else if (f.event === 'session.updated') {
      detail = h('span.muted.small', `${(d.changed || []).join(', ')}`)
    } else if (f.event.startsWith('annotation.')) {
      detail = h('button.tl-quote', { on: { click: () => open(d.annotation.message_id) } }, d.annotation.body || d.annotation.kind)
    }
    list.appendChild(h(`li.tl-item.${f.event.replace('.', '-')}`, { 'data-seq': f.seq },
      h('span.tl-icon', icon(ic, 14)),
      h('div.tl-body',
        h('div.tl-line', avatar(who, 'sm'), h('strong', who.name), ` ${verb}`, h('time.muted.small', clockTime(f.ts)), h('span.muted.small.seq', `#${f.seq}`)),
        detail)))
  }

  ;(async () => {
    fill(list, h('li.muted', 'Loading…'))
    let after = 0
    const frames = []
    for (;;) {
      const { items } = await client.rest.listEvents(sessionId, { after_seq: after, limit: 500 })
      frames.push(...items)
      if (items.length < 500) break
      after = items[items.length - 1].seq
    }
    fill(list)
    for (const f of frames) add(f)
  })().catch((err) => fill(list, h('li.muted', `Could not load the timeline: ${err.message}`)))

  return { el, add }
}
