// Annotations in the conversation view: highlighted spans of a message's text, the selection
// that starts one, and the panel of threads (comments, replies, resolve).

import { h, icon, avatar, colorFor, shortTime } from './dom.js'

/** Split `text` at annotation boundaries into segments with the annotations covering them. */
export function segments (/** @type {string} */ text, /** @type {any[]} */ anns) {
  const cuts = new Set([0, text.length])
  const ranged = anns.filter((a) => a.range && a.range.end > a.range.start && a.range.start < text.length)
  for (const a of ranged) { cuts.add(Math.max(0, a.range.start)); cuts.add(Math.min(text.length, a.range.end)) }
  const points = [...cuts].sort((x, y) => x - y)
  const out = []
  for (let i = 0; i < points.length - 1; i++) {
    const [s, e] = [points[i], points[i + 1]]
    out.push({ text: text.slice(s, e), anns: ranged.filter((a) => a.range.start <= s && a.range.end >= e) })
  }
  return out
}

/** Offset of (node, offset) inside `container`'s text. */
export function textOffset (/** @type {Node} */ container, /** @type {Node} */ node, /** @type {number} */ offset) {
  const r = document.createRange()
  r.setStart(container, 0)
  r.setEnd(node, offset)
  return r.toString().length
}

/**
 * The span of one message's text the user selected, or null.
 * @param {Element} root only selections inside it count
 * @returns {{messageId: string, range: {start: number, end: number}, quote: string, rect: DOMRect} | null}
 */
export function selectedSpan (root) {
  const sel = document.getSelection()
  if (!sel || sel.isCollapsed || !sel.rangeCount) return null
  const range = sel.getRangeAt(0)
  const within = (/** @type {Node} */ n) => /** @type {HTMLElement|null} */ ((n.nodeType === 1 ? n : n.parentElement))?.closest('.msg-text[data-message]')
  const startEl = within(range.startContainer)
  if (!startEl || startEl !== within(range.endContainer) || !root.contains(startEl)) return null
  const start = textOffset(startEl, range.startContainer, range.startOffset)
  const end = textOffset(startEl, range.endContainer, range.endOffset)
  if (end <= start) return null
  return { messageId: /** @type {string} */ (startEl.dataset.message), range: { start, end }, quote: range.toString(), rect: range.getBoundingClientRect() }
}

/**
 * The annotation panel's content: open or resolved threads, and the comment being written.
 * @param {any} conv the Conversation
 */
export function panelView (conv) {
  const showResolved = conv._showResolved === true
  const list = conv.annotations.filter((a) => showResolved ? a.resolved : !a.resolved)
  const draft = conv.draft
    ? (() => {
        const area = /** @type {HTMLTextAreaElement} */ (h('textarea.input', { rows: 3, placeholder: 'Add a comment…', 'aria-label': 'Comment' }))
        setTimeout(() => area.focus())
        return h('div.thread.draft',
          conv.draft.quote ? h('blockquote', conv.draft.quote) : h('div.muted.small', 'On the whole message'),
          area,
          h('div.row-end',
            h('button.btn', { on: { click: () => { conv.draft = null; conv.renderPanel() } } }, 'Cancel'),
            h('button.btn.primary', { 'data-action': 'post-comment', on: { click: () => conv.postDraft(area.value) } }, 'Comment')))
      })()
    : null
  return [
    h('div.panel-head', h('h2', 'Annotations'), h('button.icon-btn', { 'aria-label': 'Close', on: { click: () => conv.togglePanel(false) } }, icon('close'))),
    h('div.segmented',
      h(`button${!showResolved ? '.active' : ''}`, { on: { click: () => { conv._showResolved = false; conv.renderPanel() } } }, `Open (${conv.annotations.filter((a) => !a.resolved).length})`),
      h(`button${showResolved ? '.active' : ''}`, { on: { click: () => { conv._showResolved = true; conv.renderPanel() } } }, `Resolved (${conv.annotations.filter((a) => a.resolved).length})`)),
    draft,
    ...list.map((a) => threadView(conv, a)),
    !list.length && !draft ? h('div.panel-empty', icon('highlight', 28), h('p', showResolved ? 'Nothing resolved yet.' : 'Select text in a message to highlight it or start a discussion.')) : null
  ]
}

/**
 * One thread: the quoted span, the comment, its replies, reply box and resolve.
 * @param {any} conv the Conversation @param {any} a the annotation
 */
export function threadView (conv, a) {
  const msg = conv.tree.byId.get(a.message_id)
  const quote = msg && a.range ? /** @type {any} */ (msg).text.slice(a.range.start, a.range.end) : ''
  const author = conv.person(a.author || '?')
  const reply = /** @type {HTMLInputElement} */ (h('input.input.reply-input', { placeholder: 'Reply…', 'aria-label': 'Reply' }))
  reply.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && reply.value.trim()) { conv.doc?.reply(a.id, reply.value.trim()); reply.value = '' }
  })
  return h(`div.thread${a.id === conv.focusAnn ? '.focus' : ''}${a.resolved ? '.resolved' : ''}`, { 'data-thread': a.id },
    h('button.thread-quote', { on: { click: () => conv.revealMessage(a.message_id, a.id) } },
      quote ? h('blockquote', { style: { '--ann-color': colorFor(a.author || '') } }, quote) : h('span.muted.small', msg ? `On “${/** @type {any} */ (msg).text.slice(0, 60)}”` : 'On a message')),
    h('div.comment',
      avatar(author, 'sm'),
      h('div.comment-body',
        h('div.comment-head', h('strong', author.name), h('span.muted.small', shortTime(a.created)), h('span.kind-badge', a.kind)),
        a.body ? h('p', a.body) : null)),
    ...a.replies.map((/** @type {any} */ r) => {
      const ra = conv.person(r.author || '?')
      return h('div.comment.reply', avatar(ra, 'sm'), h('div.comment-body', h('div.comment-head', h('strong', ra.name), h('span.muted.small', shortTime(r.created))), h('p', r.body)))
    }),
    a.resolved
      ? h('div.row-between', h('span.muted.small', icon('check', 14), ` Resolved by ${conv.person(a.resolved_by || '?').name}`), h('button.btn.sm', { on: { click: () => conv.doc?.resolve(a.id, false) } }, 'Reopen'))
      : h('div.thread-actions', reply, h('button.btn.sm', { 'data-action': 'resolve', on: { click: () => conv.doc?.resolve(a.id) } }, icon('check', 14), 'Resolve'))
  )
}
