// Search over every session the user may read (POST /api/v1/search): ranked hits with their
// matches marked, facets to narrow them, and "more" pages. A sentence is first read by
// POST /api/v1/search/parse; what it understood shows as chips the user can edit or remove.

import { h, fill, icon, shortTime } from './dom.js'

/** The fields of a structured query, in chip order, with how a chip names them. */
export const FIELDS = /** @type {const} */ ([
  ['q', 'Words'], ['participant', 'With'], ['owner', 'Started by'], ['author', 'Written by'], ['tag', 'Tag'],
  ['assistant', 'Assistant'], ['model', 'Model'], ['status', 'Status'], ['from', 'From'], ['to', 'Before']
])
const FACETS = /** @type {const} */ ([['status', 'Status'], ['tag', 'Tags'], ['participant', 'People'], ['assistant', 'Assistants'], ['model', 'Models']])
const KIND_LABEL = { message: 'Message', title: 'Title', tag: 'Tag', annotation: 'Comment', session: 'Session' }

/**
 * Whether to read the text as a sentence first: not when it already uses the search syntax
 * (quoted phrases, -excluded words), which the parser would take apart.
 * @param {string} text
 */
export function wantsParse (text) {
  return !/(^|\s)-\S|"/.test(text)
}

/**
 * A snippet's text with its matches in <mark>, built as DOM nodes from the character offsets
 * (never as HTML, so nothing in a message can become markup).
 * @param {{text: string, highlights: Array<[number, number]>}} snippet
 */
export function snippetNodes (snippet) {
  const out = []
  let at = 0
  for (const [start, end] of [...snippet.highlights].sort((a, b) => a[0] - b[0])) {
    if (start < at || end <= start) continue
    if (start > at) out.push(document.createTextNode(snippet.text.slice(at, start)))
    out.push(h('mark', snippet.text.slice(start, end)))
    at = end
  }
  if (at < snippet.text.length) out.push(document.createTextNode(snippet.text.slice(at)))
  return out
}

/** "2026-11-25" for a date input, from an ISO time. @param {string|null|undefined} iso */
const dayOf = (iso) => iso ? iso.slice(0, 10) : ''

export class SearchView {
  /**
   * @param {import('../sdk/index.js').ParleyClient} client
   * @param {string} text what the user typed
   */
  constructor (client, text) {
    this.client = client
    /** @type {Record<string, any>} the structured query on screen */
    this.query = {}
    /** @type {string[]} */
    this.notes = []
    /** @type {any[]} */
    this.items = []
    this.cursor = null
    this.facets = null
    this.ticket = 0
    this.input = /** @type {HTMLInputElement} */ (h('input.search-big', { type: 'search', name: 'q', placeholder: 'Search, or ask: "my conversations about pricing from last week"', 'aria-label': 'Search everything', value: text }))
    this.input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); this.run(this.input.value) } })
    this.chips = h('div.query-chips', { 'aria-label': 'What is searched' })
    this.status = h('div.result-status.muted.small', { role: 'status' })
    this.results = h('ol.hits')
    this.moreBtn = h('button.btn.more', { 'data-action': 'more', on: { click: () => this.more() } }, 'More results')
    this.aside = h('aside.facet-panel', { 'aria-label': 'Narrow the results' })
    // On a phone the facets fold away behind one button, so the hits come first.
    this.facetToggle = h('button.btn.sm.facet-toggle', { 'aria-expanded': 'false', on: { click: () => this.toggleFacets() } }, icon('settings', 14), 'Filters')
    this.el = h('section.search-view',
      h('header.search-head',
        h('div.search-title-row',
          h('button.icon-btn.back', { 'aria-label': 'Back to sessions', on: { click: () => { location.hash = '' } } }, icon('back')),
          h('h1', 'Search')),
        h('div.search-bar', icon('search', 18), this.input, h('button.btn.primary.sm', { 'data-action': 'search', on: { click: () => this.run(this.input.value) } }, 'Search')),
        this.chips),
      h('div.search-layout',
        h('div.search-results', this.status, this.results, this.moreBtn),
        this.aside))
    this.moreBtn.hidden = true
  }

  /** Read the text (as a sentence unless it uses search syntax), then search. @param {string} text */
  async run (text) {
    text = text.trim()
    this.input.value = text
    history.replaceState(null, '', `#/search?q=${encodeURIComponent(text)}`)
    const ticket = ++this.ticket
    this.notes = []
    if (!text) {
      this.query = {}
    } else if (wantsParse(text)) {
      try {
        const parsed = await this.client.rest.parseSearch(text)
        if (ticket !== this.ticket) return
        this.query = Object.fromEntries(Object.entries(parsed.query).filter(([, v]) => v !== null && v !== '' && !(Array.isArray(v) && !v.length)))
        this.notes = parsed.notes || []
      } catch {
        this.query = { q: text }
      }
    } else {
      this.query = { q: text }
    }
    await this.search(ticket)
  }

  /** Run the query on screen from its first page. @param {number} [ticket] */
  async search (ticket = ++this.ticket) {
    this.renderChips()
    fill(this.status, h('span.spinner.sm'), 'Searching…')
    this.el.classList.add('busy')
    try {
      const res = await this.client.rest.searchQuery({ ...this.query, limit: 20 })
      if (ticket !== this.ticket) return
      this.items = res.items
      this.cursor = res.next_cursor
      this.facets = res.facets
      this.render()
      this.el.scrollTop = 0
    } catch (err) {
      if (ticket !== this.ticket) return
      this.items = []
      this.cursor = null
      fill(this.results)
      fill(this.status, h('span.form-error', /** @type {Error} */ (err).message))
      this.moreBtn.hidden = true
    } finally {
      if (ticket === this.ticket) this.el.classList.remove('busy')
    }
  }

  toggleFacets () {
    const open = this.el.classList.toggle('facets-open')
    this.facetToggle.setAttribute('aria-expanded', String(open))
  }

  async more () {
    if (!this.cursor) return
    const ticket = this.ticket
    this.moreBtn.setAttribute('disabled', '')
    try {
      const res = await this.client.rest.searchQuery({ ...this.query, limit: 20, cursor: this.cursor })
      if (ticket !== this.ticket) return
      this.items.push(...res.items)
      this.cursor = res.next_cursor
      for (const hit of res.items) this.results.appendChild(this.hitView(hit))
      this.renderStatus()
    } finally {
      this.moreBtn.removeAttribute('disabled')
    }
  }

  /** Change one field of the query (null removes it) and search again. @param {string} field @param {any} value */
  set (field, value) {
    if (value === null || value === undefined || value === '') delete this.query[field]
    else this.query[field] = value
    this.notes = []
    history.replaceState(null, '', `#/search?q=${encodeURIComponent(this.input.value)}`)
    this.search()
  }

  render () {
    this.renderChips()
    this.renderStatus()
    fill(this.results, ...this.items.map((hit) => this.hitView(hit)))
    if (!this.items.length) this.results.appendChild(h('li.no-hits', h('h3', 'Nothing found'), h('p.muted', 'Remove a filter, or try other words.')))
    this.renderFacets()
  }

  renderStatus () {
    const total = this.facets?.total ?? this.items.length
    fill(this.status, `${total.toLocaleString('en-US')} ${total === 1 ? 'match' : 'matches'}`, this.items.length < total ? ` · showing ${this.items.length}` : '')
    this.moreBtn.hidden = !this.cursor
  }

  renderChips () {
    const chips = FIELDS.filter(([f]) => this.query[f] !== undefined).map(([field, label]) => this.chip(field, label))
    fill(this.chips,
      ...chips,
      chips.length ? null : h('span.muted.small', 'Type words to search, or a sentence such as "my conversations about AI from last week".'),
      this.notes.length ? h('span.parse-notes.muted.small', { title: 'What the query parser understood' }, icon('sparkle', 13), this.notes.join(' · ')) : null,
      this.facetToggle)
  }

  /** One editable chip: click its value to change it, × to remove it. @param {string} field @param {string} label */
  chip (field, label) {
    const value = this.query[field]
    const isDate = field === 'from' || field === 'to'
    const shown = isDate ? new Date(value).toLocaleDateString('en-GB', { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' }) : String(value)
    const el = h('span.qchip', { 'data-field': field },
      h('span.qchip-label', label),
      h('button.qchip-value', { title: 'Change', on: { click: () => edit() } }, shown),
      h('button.qchip-remove', { 'aria-label': `Remove ${label.toLowerCase()}`, on: { click: () => this.set(field, null) } }, icon('close', 12)))
    const edit = () => {
      const input = /** @type {HTMLInputElement} */ (h('input.qchip-input', { type: isDate ? 'date' : 'text', value: isDate ? dayOf(value) : String(value), 'aria-label': label }))
      const commit = () => {
        const v = input.value.trim()
        this.set(field, isDate ? (v ? `${v}T00:00:00Z` : null) : v)
      }
      input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') { e.preventDefault(); commit() }
        if (e.key === 'Escape') this.renderChips()
      })
      input.addEventListener('change', () => { if (isDate) commit() })
      fill(el, h('span.qchip-label', label), input)
      input.focus()
    }
    return el
  }

  renderFacets () {
    const f = this.facets
    if (!f) { fill(this.aside); return }
    const sections = FACETS.map(([field, label]) => {
      // Assistants are a facet of their own, by name; their user ids say nothing here.
      const values = (f[field] || []).filter((/** @type {{value: string}} */ v) => field !== 'participant' || !v.value.startsWith('assistant.'))
      if (!values.length) return null
      return h('section.facet', { 'data-facet': field },
        h('h3', label),
        ...values.map((/** @type {{value: string, count: number}} */ v) => {
          const on = this.query[field] === v.value
          return h(`button.facet-value${on ? '.active' : ''}`, { 'aria-pressed': String(on), 'data-value': v.value, on: { click: () => this.set(field, on ? null : v.value) } },
            h('span', field === 'tag' ? `#${v.value}` : v.value), h('span.count', String(v.count)))
        }))
    })
    const from = /** @type {HTMLInputElement} */ (h('input.input.sm', { type: 'date', name: 'from', value: dayOf(this.query.from), 'aria-label': 'From', on: { change: () => this.set('from', from.value ? `${from.value}T00:00:00Z` : null) } }))
    const to = /** @type {HTMLInputElement} */ (h('input.input.sm', { type: 'date', name: 'to', value: dayOf(this.query.to), 'aria-label': 'Before', on: { change: () => this.set('to', to.value ? `${to.value}T00:00:00Z` : null) } }))
    const days = f.date?.days || []
    const peak = Math.max(1, ...days.map((/** @type {any} */ d) => d.count))
    fill(this.aside,
      ...sections,
      h('section.facet', { 'data-facet': 'date' },
        h('h3', 'Dates'),
        days.length > 1 ? h('div.spark', { title: 'Matches per day' }, ...days.slice(-40).map((/** @type {any} */ d) => h('span', { title: `${d.day}: ${d.count}`, style: { height: `${Math.max(8, Math.round(100 * d.count / peak))}%` } }))) : null,
        h('label.date-field', h('span.muted.small', 'From'), from),
        h('label.date-field', h('span.muted.small', 'Before'), to)))
  }

  /** @param {any} hit */
  hitView (hit) {
    const sid = hit.session.id
    const href = hit.kind === 'message' && hit.message ? `#/s/${sid}/m/${hit.message.id}` : hit.kind === 'annotation' ? `#/s/${sid}/a/${hit.ref_id}` : `#/s/${sid}`
    return h('li', h('a.hit', { href, 'data-kind': hit.kind, 'data-session': sid, 'data-ref': hit.ref_id },
      h('div.hit-head',
        h('span.hit-kind', /** @type {any} */ (KIND_LABEL)[hit.kind] || hit.kind),
        h('span.hit-session', hit.session.title || 'Untitled'),
        hit.session.status === 'archived' ? h('span.badge', 'archived') : null,
        h('span.muted.small.hit-time', shortTime(hit.created_at))),
      hit.snippet ? h('p.hit-snippet', ...snippetNodes(hit.snippet)) : null,
      h('div.hit-foot',
        hit.author ? h('span.muted.small', hit.kind === 'session' ? `started by ${hit.author}` : hit.author) : null,
        ...hit.session.tags.map((/** @type {string} */ t) => h('span.tag', `#${t}`)))))
  }
}
