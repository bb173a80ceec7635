// One session: live messages on the chosen branch, streaming answers with stop, typing and
// presence, annotations (select text to highlight or comment; threads; resolve), the
// conversation tree, the timeline, and the session's assistants.

import { h, fill, icon, avatar, colorFor, clockTime, toast } from './dom.js'
import { ConversationTree } from './tree.js'
import { timelineView } from './timeline.js'
import { assistantsDialog } from './assistants.js'
import { settingsDialog } from './settings.js'
import { treeView } from './tree-view.js'
import { segments, selectedSpan, panelView } from './annotations.js'

export class Conversation {
  /**
   * @param {import('../sdk/index.js').ParleyClient} client
   * @param {string} sessionId
   * @param {{onTitle: () => void, back: () => void}} hooks
   */
  constructor (client, sessionId, hooks) {
    this.client = client
    this.sessionId = sessionId
    this.hooks = hooks
    this.me = client.user
    this.tree = new ConversationTree()
    /** @type {string|null} the leaf of the branch on screen */
    this.leaf = null
    /** @type {Map<string, any>} */
    this.people = new Map()
    /** @type {any[]} */
    this.assistants = []
    /** @type {any[]} */
    this.annotations = []
    this.tab = 'chat'
    this.sub = null
    this.doc = null
    /** @type {string|null} */
    this.editing = null
    /** @type {string|null} the message a search hit opened the session at */
    this.target = null
    /** @type {string|null} annotation thread in focus */
    this.focusAnn = null
    /** @type {{messageId: string, range: any, quote: string}|null} */
    this.draft = null
    this.panelOpen = false
    this.destroyed = false

    this.title = h('h1.conv-title', '…')
    this.tagsEl = h('div.conv-tags')
    this.presenceEl = h('div.presence', { 'aria-label': 'People here' })
    this.tabs = h('div.tabs', { role: 'tablist' },
      ...[['chat', 'Conversation', 'chat'], ['tree', 'Tree', 'tree'], ['timeline', 'Timeline', 'timeline']].map(([id, label, ic]) =>
        h('button.tab', { role: 'tab', 'data-tab': id, on: { click: () => this.setTab(id) } }, icon(/** @type {any} */ (ic), 16), h('span.tab-label', label))))
    this.annBadge = h('span.count-badge')
    this.header = h('header.conv-header',
      h('div.conv-head-row',
        h('button.icon-btn.back', { 'aria-label': 'Back to sessions', on: { click: () => hooks.back() } }, icon('back')),
        h('div.conv-heading', this.title, this.tagsEl),
        this.presenceEl,
        h('button.icon-btn', { title: 'Session settings', 'aria-label': 'Session settings', 'data-action': 'settings', on: { click: () => this.openSettings() } }, icon('settings')),
        h('button.icon-btn.labeled', { title: 'Assistants', 'data-action': 'assistants', on: { click: () => this.openAssistants() } }, icon('bot'), h('span.btn-label', 'Assistants')),
        h('button.icon-btn.labeled', { title: 'Annotations', 'data-action': 'annotations', on: { click: () => this.togglePanel() } }, icon('comment'), h('span.btn-label', 'Comments'), this.annBadge)
      ),
      this.tabs
    )
    this.messagesEl = h('div.messages', { 'aria-live': 'polite' })
    this.body = h('section.conv-body', this.messagesEl)
    this.typingEl = h('div.typing-line')
    this.input = /** @type {HTMLTextAreaElement} */ (h('textarea.composer-input', { rows: 1, placeholder: window.matchMedia('(max-width: 760px)').matches ? 'Message' : 'Write a message…  (@name asks an assistant)', 'aria-label': 'Message' }))
    this.askRow = h('div.ask-row')
    this.sendBtn = h('button.send-btn', { 'aria-label': 'Send', title: 'Send (Enter)', on: { click: () => this.submit() } }, icon('send', 20))
    this.composer = h('footer.composer', this.typingEl, this.askRow, h('div.composer-box', this.input, this.sendBtn))
    this.panel = h('aside.panel', { 'aria-label': 'Annotations' })
    this.selectionBar = h('div.selection-bar',
      h('button', { 'data-action': 'highlight', on: { mousedown: (/** @type {Event} */ e) => e.preventDefault(), click: () => this.annotateSelection('highlight') } }, icon('highlight', 16), 'Highlight'),
      h('button', { 'data-action': 'comment', on: { mousedown: (/** @type {Event} */ e) => e.preventDefault(), click: () => this.annotateSelection('comment') } }, icon('comment', 16), 'Comment'))
    this.banner = h('div.conn-banner', { role: 'status' })
    this.el = h('div.conversation', h('div.conv-column', this.header, this.banner, this.body, this.composer), this.panel, this.selectionBar)
    this._offState = client.on('state', (/** @type {string} */ st) => this.renderConnection(st))

    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); this.submit() }
    })
    this.input.addEventListener('input', () => { this.autosize(); this.typingTick() })
    this._onSelection = () => this.selectionChanged()
    document.addEventListener('selectionchange', this._onSelection)
    this._typingSent = 0
    this._typingStop = null
    this.setTab('chat')
  }

  async load () {
    const rest = this.client.rest
    const [session, messages, participants, assistants] = await Promise.all([
      rest.getSession(this.sessionId), rest.allMessages(this.sessionId),
      rest.listParticipants(this.sessionId), rest.listAssistants(this.sessionId)
    ])
    if (this.destroyed) return
    this.session = session
    for (const p of participants.items) this.people.set(p.user_id, p)
    this.assistants = assistants.items
    this.tree = ConversationTree.from(messages)
    this.leaf = this.tree.newestLeaf(null)
    this.renderHeader()
    this.renderAskRow()
    // Follow live from the last message we read: nothing is missed between the two.
    const since = Math.max(0, ...messages.map((/** @type {any} */ m) => m.seq))
    this.sub = await this.client.subscribe(this.sessionId, { sinceSeq: Math.min(since, session.last_seq) })
    this.sub.on('event', (/** @type {any} */ f) => this.onEvent(f))
    this.sub.on('stream', (/** @type {any} */ s, /** @type {string} */ kind) => {
      if (kind === 'error') toast(`${s.assistant?.name || 'The assistant'} could not answer.`, 'error')
      this.renderStreams()
    })
    this.sub.on('typing', () => this.renderTyping())
    await this.attachDocument()
    this.renderAll()
    this.renderPresence()
    this.scrollToEnd()
  }

  /** Join the session document: presence and annotations. */
  async attachDocument () {
    const doc = await this.client.document(this.sessionId)
    if (this.destroyed) { doc.close(); return }
    this.doc = doc
    doc.setPresence({ viewing: this.sessionId, typing: false })
    doc.on('presence', () => this.renderPresence())
    doc.on('annotations', (/** @type {any[]} */ list) => { this.annotations = list; this.renderMessages(); this.renderPanel() })
    doc.on('refused', (/** @type {string} */ reason) => this.refused(doc, reason))
    await doc.whenSynced().catch(() => null)
    this.annotations = doc.annotations()
  }

  /**
   * The server refused a change: it stays only in our copy, and everything built on it would be
   * refused too, so start again from the server's document.
   * @param {any} doc @param {string} reason
   */
  async refused (doc, reason) {
    if (doc !== this.doc) return
    toast(reason.startsWith('forbidden') ? 'Only participants can annotate: send a message to join this session.' : 'A change could not be saved; the document was reloaded.', 'error')
    this.doc = null
    await doc.close()
    await this.attachDocument()
    this.renderMessages()
    this.renderPanel()
    this.renderPresence()
  }

  /** @param {string} state */
  renderConnection (state) {
    fill(this.banner, state === 'open' ? null : h('span', h('span.spinner.sm'), state === 'closed' ? 'Disconnected.' : 'Reconnecting… messages you send now go out when the connection is back.'))
    this.banner.classList.toggle('show', state !== 'open')
    if (state === 'open' && this.sub) this.renderMessages()
  }

  openSettings () {
    if (!this.session) return
    settingsDialog(this.client, this.session, (session) => {
      this.session = session
      this.renderHeader()
      this.hooks.onTitle()
    })
  }

  destroy () {
    this.destroyed = true
    this._offState?.()
    document.removeEventListener('selectionchange', this._onSelection)
    this.sub?.unsubscribe()
    this.doc?.close()
  }

  // Events

  /** @param {any} f */
  onEvent (f) {
    const d = f.data
    switch (f.event) {
      case 'message.created': {
        const follow = this.leaf === null || this.tree.isAncestor(this.leaf, d.message.parent_id ?? this.tree.last?.id ?? '') || this._followNext === d.message.client_id
        this.tree.add(d.message)
        if (follow || this._followParent === d.message.parent_id) {
          this.leaf = d.message.id
          this._followParent = null
        }
        this.renderMessages()
        this.scrollToEnd()
        break
      }
      case 'message.edited':
      case 'message.deleted':
        this.tree.add(d.message)
        this.renderMessages()
        break
      case 'participant.joined':
      case 'participant.updated':
        this.people.set(d.participant.user_id, d.participant)
        // We just got a role (first message): the document should let us write at once.
        if (d.participant.user_id === this.me.id && this.doc && this.doc.role !== d.participant.role) this.doc.rejoin().catch(() => null)
        break
      case 'session.updated':
        this.session = d.session
        this.renderHeader()
        this.hooks.onTitle()
        break
      case 'session.deleted':
        toast('This session was deleted.', 'error')
        this.hooks.back()
        break
    }
    if (this.tab === 'timeline' && !f.ephemeral) this.timeline?.add(f)
  }

  // Rendering

  renderAll () {
    this.renderHeader()
    this.renderMessages()
    this.renderPanel()
    this.renderTyping()
  }

  renderHeader () {
    if (!this.session) return
    this.title.textContent = this.session.title || 'Untitled'
    fill(this.tagsEl, 
      this.session.status === 'archived' ? h('span.badge', 'archived') : null,
      ...this.session.tags.map((/** @type {string} */ t) => h('span.tag', `#${t}`)),
      h('span.muted.small', `${this.tree.byId.size} messages`),
      this.tree.forks() ? h('span.muted.small', ` · ${this.tree.forks()} branch point${this.tree.forks() > 1 ? 's' : ''}`) : null
    )
    const open = this.annotations.filter((a) => !a.resolved).length
    this.annBadge.textContent = open ? String(open) : ''
  }

  renderPresence () {
    if (!this.doc) return
    // Others first (a phone shows only the first two), then me.
    const list = this.doc.presence().sort((a, b) => Number(a.user.id === this.me.id) - Number(b.user.id === this.me.id) || a.user.name.localeCompare(b.user.name))
    fill(this.presenceEl, ...list.slice(0, 6).map((p) => {
      const a = avatar({ id: p.user.id, name: p.user.name, color: p.user.color })
      a.classList.add('present')
      a.dataset.user = p.user.id
      a.title = p.user.id === this.me.id ? `${p.user.name} (you)` : p.user.name
      return a
    }), list.length > 6 ? h('span.avatar.more', `+${list.length - 6}`) : null)
  }

  /** @param {string} userId */
  person (userId) {
    const p = this.people.get(userId)
    if (p) return { id: userId, name: p.name, kind: p.kind }
    if (userId.startsWith('assistant.')) return { id: userId, name: 'assistant', kind: 'assistant' }
    return { id: userId, name: userId, kind: 'human' }
  }

  renderMessages () {
    if (this.tab !== 'chat') return
    const path = this.tree.path(this.leaf)
    const nodes = []
    if (!path.length) {
      nodes.push(h('div.empty-conv', icon('chat', 32), h('h3', 'No messages yet'), h('p.muted', 'Say hello, or mention an assistant with @name to get an answer.')))
    }
    let lastAuthor = null
    let lastDay = null
    for (const m of path) {
      const day = new Date(m.created_at).toDateString()
      if (day !== lastDay) {
        nodes.push(h('div.day-sep', h('span', new Date(m.created_at).toLocaleDateString([], { weekday: 'long', day: 'numeric', month: 'long' }))))
        lastDay = day
        lastAuthor = null
      }
      nodes.push(this.messageView(m, m.author === lastAuthor))
      lastAuthor = m.author
    }
    this.streamsEl = h('div.streams')
    nodes.push(this.streamsEl)
    fill(this.messagesEl, ...nodes)
    this.renderStreams()
    this.renderHeader()
  }

  /** @param {any} m @param {boolean} grouped */
  messageView (m, grouped) {
    const who = this.person(m.author)
    const mine = m.author === this.me.id
    const isAssistant = who.kind === 'assistant'
    const anns = this.annotations.filter((a) => a.message_id === m.id)
    const textEl = h('div.msg-text', { 'data-message': m.id })
    if (m.deleted_at) {
      textEl.append(h('em.muted', 'This message was deleted.'))
    } else if (this.editing === m.id) {
      const area = /** @type {HTMLTextAreaElement} */ (h('textarea.edit-input', { rows: 3 }))
      area.value = m.text
      textEl.append(area, h('div.edit-actions',
        h('span.muted.small', 'Saving makes a new branch; the original stays in the tree.'),
        h('button.btn', { on: { click: () => { this.editing = null; this.renderMessages() } } }, 'Cancel'),
        h('button.btn.primary', { 'data-action': 'save-edit', on: { click: () => this.saveEdit(m, area.value) } }, 'Save as branch')))
      setTimeout(() => area.focus())
    } else {
      for (const seg of segments(m.text, anns.filter((a) => !a.resolved))) {
        if (!seg.anns.length) { textEl.append(seg.text); continue }
        const a = seg.anns[0]
        textEl.append(h(`mark.ann.ann-${a.kind}${this.focusAnn && seg.anns.some((x) => x.id === this.focusAnn) ? '.focus' : ''}`, {
          'data-ann': a.id,
          style: { '--ann-color': colorFor(a.author || '') },
          on: { click: () => this.openThread(a.id) }
        }, seg.text))
      }
    }
    const siblings = this.tree.siblings(m.id)
    const idx = siblings.findIndex((s) => s.id === m.id)
    const actions = h('div.msg-actions',
      mine && !m.deleted_at && !isAssistant ? h('button.icon-btn.sm', { title: 'Edit (new branch)', 'data-action': 'edit', on: { click: () => { this.editing = m.id; this.renderMessages() } } }, icon('edit', 16)) : null,
      isAssistant && !m.deleted_at ? h('button.icon-btn.sm', { title: 'Regenerate (new branch)', 'data-action': 'regenerate', on: { click: () => this.regenerate(m) } }, icon('regen', 16)) : null,
      !m.deleted_at ? h('button.icon-btn.sm', { title: 'Comment on this message', on: { click: () => this.startDraft(m.id, null, '') } }, icon('comment', 16)) : null,
      mine && !m.deleted_at ? h('button.icon-btn.sm', { title: 'Delete', on: { click: () => this.remove(m) } }, icon('trash', 16)) : null
    )
    const threadCount = anns.filter((a) => !a.resolved).length
    return h(`article.msg${mine ? '.mine' : ''}${isAssistant ? '.assistant' : ''}${grouped ? '.grouped' : ''}${this.target === m.id ? '.target' : ''}`, { 'data-id': m.id, 'data-author': m.author },
      h('div.msg-gutter', grouped ? null : avatar(who)),
      h('div.msg-main',
        grouped ? null : h('div.msg-head', h('span.msg-author', who.name), isAssistant ? h('span.badge.ai', 'AI') : null, h('time.muted.small', { datetime: m.created_at }, clockTime(m.created_at)), m.edited_at ? h('span.muted.small', '(edited)') : null),
        h('div.bubble', textEl),
        h('div.msg-foot',
          siblings.length > 1 ? h('div.branch-switch', { 'aria-label': 'Branches' },
            h('button.icon-btn.xs', { 'aria-label': 'Previous branch', disabled: idx === 0, on: { click: () => this.switchTo(siblings[idx - 1].id) } }, icon('left', 14)),
            h('span.small', `${idx + 1} / ${siblings.length}`),
            h('button.icon-btn.xs', { 'aria-label': 'Next branch', disabled: idx === siblings.length - 1, on: { click: () => this.switchTo(siblings[idx + 1].id) } }, icon('right', 14))) : null,
          threadCount ? h('button.thread-chip', { on: { click: () => this.openThread(anns.find((a) => !a.resolved).id) } }, icon('comment', 14), `${threadCount}`) : null,
          m.metadata?.finish_reason === 'cancelled' ? h('span.muted.small', 'stopped') : null,
          m.metadata?.error ? h('span.msg-error', { title: JSON.stringify(m.metadata.error) }, `The assistant failed: ${m.metadata.error.message || m.metadata.error.kind || 'error'}`) : null),
        actions
      )
    )
  }

  renderStreams () {
    if (!this.streamsEl || !this.sub) return
    const onPath = new Set(this.tree.path(this.leaf).map((m) => m.id))
    const streams = this.sub.streams.filter((s) => !s.promptId || onPath.has(s.promptId) || !this.tree.byId.has(s.promptId))
    const keep = new Set()
    for (const s of streams) {
      keep.add(s.id)
      let el = /** @type {HTMLElement|null} */ (this.streamsEl.querySelector(`[data-stream="${s.id}"]`))
      if (!el) {
        const who = { id: s.assistant?.user_id || 'assistant', name: s.assistant?.name || 'assistant', kind: 'assistant' }
        el = h('article.msg.assistant.streaming', { 'data-stream': s.id },
          h('div.msg-gutter', avatar(who)),
          h('div.msg-main',
            h('div.msg-head', h('span.msg-author', who.name), h('span.badge.ai', 'AI'), h('span.muted.small.live', h('span.pulse'), 'answering')),
            h('div.bubble', h('div.msg-text.stream-text')),
            h('div.msg-foot', h('button.btn.stop-btn', { 'data-action': 'stop', on: { click: () => this.stop(s.id) } }, icon('stop', 14), 'Stop'))))
        this.streamsEl.appendChild(el)
      }
      const t = /** @type {HTMLElement} */ (el.querySelector('.stream-text'))
      if (t.textContent !== s.text) {
        t.textContent = s.text
        t.appendChild(h('span.caret'))
        this.scrollToEnd(true)
      }
    }
    for (const el of [...this.streamsEl.children]) if (!keep.has(/** @type {HTMLElement} */ (el).dataset.stream)) el.remove()
  }

  renderTyping () {
    const list = this.sub ? [...this.sub.typing.values()] : []
    fill(this.typingEl, ...(list.length ? [h('span.dots', h('i'), h('i'), h('i')), `${list.join(', ')} ${list.length > 1 ? 'are' : 'is'} typing…`] : []))
  }

  renderAskRow () {
    fill(this.askRow, ...this.assistants.map((a) =>
      h('button.ask-chip', { title: `Send to ${a.name} and ask for an answer`, 'data-assistant': a.name, on: { click: () => this.submit(a.name) } }, icon('sparkle', 14), `Ask ${a.name}`)))
  }

  // Annotations panel

  togglePanel (open = !this.panelOpen) {
    this.panelOpen = open
    this.el.classList.toggle('panel-open', open)
    this.renderPanel()
  }

  /** @param {string} id */
  openThread (id) {
    this.focusAnn = id
    this.togglePanel(true)
    this.renderMessages()
    setTimeout(() => this.panel.querySelector(`[data-thread="${id}"]`)?.scrollIntoView({ block: 'nearest', behavior: 'smooth' }))
  }

  renderPanel () {
    if (!this.panelOpen) { fill(this.panel); return }
    fill(this.panel, ...panelView(this))
  }

  /** Bring a message onto the screen (switching branch if needed). @param {string} messageId @param {string} [annId] */
  revealMessage (messageId, annId) {
    if (!this.tree.path(this.leaf).some((m) => m.id === messageId)) this.leaf = this.tree.newestLeaf(messageId)
    this.focusAnn = annId || null
    this.setTab('chat')
    setTimeout(() => this.messagesEl.querySelector(`[data-id="${messageId}"]`)?.scrollIntoView({ block: 'center', behavior: 'smooth' }))
  }

  /** Open at one message (a search hit): its branch, scrolled into view and marked. @param {string} messageId */
  focusMessage (messageId) {
    if (!this.tree.byId.has(messageId)) { toast('That message is no longer in this session.', 'error'); return }
    this.target = messageId
    this.revealMessage(messageId)
    // After the chat tab's own scroll to the end (one frame later), not before it.
    requestAnimationFrame(() => requestAnimationFrame(() => this.messagesEl.querySelector(`[data-id="${messageId}"]`)?.scrollIntoView({ block: 'center' })))
  }

  // Selection → annotation

  selectionChanged () {
    const span = selectedSpan(this.el)
    const bar = this.selectionBar
    bar.classList.toggle('show', span !== null)
    if (!span) return
    this._selection = span
    const host = this.el.getBoundingClientRect()
    bar.style.left = `${Math.max(8, Math.min(host.width - 220, span.rect.left - host.left + span.rect.width / 2 - 100))}px`
    bar.style.top = `${Math.max(8, span.rect.top - host.top - 48)}px`
  }

  /** @param {'highlight'|'comment'} kind */
  annotateSelection (kind) {
    const s = this._selection
    if (!s || !this.doc) return
    document.getSelection()?.removeAllRanges()
    this.selectionBar.classList.remove('show')
    if (kind === 'highlight') {
      const id = this.doc.annotate({ messageId: s.messageId, range: s.range, kind: 'highlight' })
      this.focusAnn = id
      return
    }
    this.startDraft(s.messageId, s.range, s.quote)
  }

  /** @param {string} messageId @param {any} range @param {string} quote */
  startDraft (messageId, range, quote) {
    this.draft = { messageId, range, quote }
    this.togglePanel(true)
  }

  /** @param {string} body */
  postDraft (body) {
    if (!this.draft || !this.doc || !body.trim()) return
    const id = this.doc.annotate({ messageId: this.draft.messageId, range: this.draft.range, kind: 'comment', body: body.trim() })
    this.draft = null
    this.focusAnn = id
    this.renderPanel()
  }

  // Writing

  autosize () {
    this.input.style.height = 'auto'
    this.input.style.height = `${Math.min(180, this.input.scrollHeight)}px`
  }

  typingTick () {
    if (!this.sub) return
    const now = Date.now()
    if (now - this._typingSent > 2500) {
      this._typingSent = now
      this.sub.setTyping(true)
    }
    clearTimeout(this._typingStop)
    this._typingStop = setTimeout(() => this.typingDone(), 4000)
  }

  typingDone () {
    clearTimeout(this._typingStop)
    if (this._typingSent) this.sub?.setTyping(false)
    this._typingSent = 0
  }

  /** Send the composer's text; with `assistant`, ask it to answer. @param {string} [assistant] */
  async submit (assistant) {
    const text = this.input.value
    if (!text.trim() || !this.sub) return
    this.input.value = ''
    this.autosize()
    this.typingDone()
    const parentId = this.leaf || undefined
    try {
      if (assistant) {
        this._followParent = null
        await this.sub.ask(assistant, { text, parentId })
      } else {
        const clientId = crypto.randomUUID()
        this._followNext = clientId
        await this.sub.send({ text, parentId, clientId })
      }
    } catch (err) {
      this.input.value = text
      toast(/** @type {Error} */ (err).message, 'error')
    }
  }

  /** @param {any} m @param {string} text */
  async saveEdit (m, text) {
    if (!text.trim() || !this.sub) return
    this.editing = null
    const parent = this.tree.parent(m.id)
    const clientId = crypto.randomUUID()
    this._followNext = clientId
    try {
      const ack = await this.sub.send({ text, parentId: parent || undefined, clientId, metadata: parent ? { edit_of: m.id } : { edit_of: m.id, root: true } })
      if (this.tree.byId.has(ack.message_id)) this.switchTo(ack.message_id)
    } catch (err) { toast(/** @type {Error} */ (err).message, 'error') }
    this.renderMessages()
  }

  /** Ask the same assistant to answer the same prompt again: a sibling answer. @param {any} m */
  async regenerate (m) {
    const prompt = this.tree.parent(m.id)
    const name = this.person(m.author).name
    if (!prompt || !this.sub) return
    this.leaf = prompt
    this._followParent = prompt
    this.renderMessages()
    try {
      await this.sub.ask(name, { messageId: prompt })
    } catch (err) { toast(/** @type {Error} */ (err).message, 'error') }
  }

  /** @param {any} m */
  async remove (m) {
    if (!confirm('Delete this message for everyone?')) return
    try { await this.sub?.delete(m.id) } catch (err) { toast(/** @type {Error} */ (err).message, 'error') }
  }

  /** @param {string} streamId */
  async stop (streamId) {
    try { await this.sub?.stop(streamId) } catch (err) { toast(/** @type {Error} */ (err).message, 'error') }
  }

  /** Show the branch through `id` (its newest leaf). @param {string} id */
  switchTo (id) {
    this.leaf = this.tree.newestLeaf(id)
    this.setTab('chat')
  }

  scrollToEnd (onlyIfNear = false) {
    const b = this.body
    if (onlyIfNear && b.scrollHeight - b.scrollTop - b.clientHeight > 160) return
    requestAnimationFrame(() => { b.scrollTop = b.scrollHeight })
  }

  // Tabs

  /** @param {string} tab */
  setTab (tab) {
    this.tab = tab
    for (const b of this.tabs.children) b.classList.toggle('active', /** @type {HTMLElement} */ (b).dataset.tab === tab)
    this.el.dataset.tab = tab
    if (tab === 'chat') {
      fill(this.body, this.messagesEl)
      this.renderMessages()
      this.scrollToEnd()
    } else if (tab === 'tree') {
      fill(this.body, treeView(this))
    } else {
      this.timeline = timelineView(this.client, this.sessionId, (/** @type {string} */ id) => this.person(id), (/** @type {string} */ id) => this.tree.byId.has(id) && this.revealMessage(id))
      fill(this.body, this.timeline.el)
    }
  }

  async openAssistants () {
    await assistantsDialog(this.client, this.sessionId, this.assistants, (/** @type {any[]} */ list) => {
      this.assistants = list
      this.renderAskRow()
    })
  }
}
