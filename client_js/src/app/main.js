// The Parley workspace: sign in, the session list, and the conversation view. Plain DOM on the
// SDK; everything it needs is in this bundle (no network but the Parley server).

import { ParleyClient, AuthError } from '../sdk/index.js'
import { h, fill, icon, avatar, shortTime, toast } from './dom.js'
import { Conversation } from './conversation.js'
import { newSessionDialog } from './new-session.js'
import { SearchView } from './search.js'

const TOKEN_KEY = 'parley.token'
const root = /** @type {HTMLElement} */ (document.getElementById('app'))

/** The token from `#token=...` (the link `make serve` prints), else the saved one. */
function takeToken () {
  const m = location.hash.match(/token=([^&]+)/)
  if (m) {
    localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]))
    history.replaceState(null, '', location.pathname + location.search)
  }
  return localStorage.getItem(TOKEN_KEY)
}

function signInView (/** @type {string} */ error = '') {
  const input = /** @type {HTMLTextAreaElement} */ (h('textarea.token-input', { placeholder: 'Paste your token', rows: 4, spellcheck: false, 'aria-label': 'Token' }))
  const submit = () => {
    const token = input.value.trim()
    if (!token) return
    localStorage.setItem(TOKEN_KEY, token)
    start()
  }
  fill(root, h('div.signin',
    h('div.signin-card',
      h('div.brand.large', h('span.logo', icon('chat', 22)), 'Parley'),
      h('p.muted', 'Shared conversations between people, bots and language models.'),
      error ? h('div.alert', error) : null,
      h('label.field-label', { for: 'token' }, 'Sign in with a token'),
      input,
      h('button.btn.primary.block', { on: { click: submit } }, 'Sign in'),
      h('p.hint', 'Run ', h('code', 'make serve'), ' and open the workspace link it prints, or create a token with ', h('code', 'parley token create --user NAME'), '.')
    )
  ))
  input.id = 'token'
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); submit() } })
  input.focus()
}

class Workspace {
  /** @param {ParleyClient} client */
  constructor (client) {
    this.client = client
    /** @type {any[]} */
    this.sessions = []
    this.query = ''
    this.status = 'active'
    /** @type {string|null} */
    this.tag = null
    /** @type {Conversation|null} */
    this.conversation = null
    /** @type {{el: HTMLElement, destroy?: () => void}|null} the search or dashboard view */
    this.view = null
    this.viewName = ''
    this.list = h('nav.session-list', { 'aria-label': 'Sessions' })
    this.facets = h('div.facets')
    this.search = /** @type {HTMLInputElement} */ (h('input.search-input', { type: 'search', placeholder: 'Search sessions', 'aria-label': 'Search sessions', title: 'Filters the list; Enter searches every message' }))
    this.searchHint = h('button.search-hint', { hidden: true, on: { click: () => { location.hash = `#/search?q=${encodeURIComponent(this.search.value.trim())}` } } }, icon('search', 13), 'Enter: search messages and comments too')
    this.search.addEventListener('input', () => {
      this.query = this.search.value.trim().toLowerCase()
      this.searchHint.hidden = !this.query
      this.renderList()
    })
    // Typing narrows the list by title and tag; Enter searches messages, comments and all.
    this.search.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && this.search.value.trim()) location.hash = `#/search?q=${encodeURIComponent(this.search.value.trim())}`
    })
    this.nav = h('nav.app-nav', { 'aria-label': 'Workspace' },
      h('a.nav-item', { href: '#/search', 'data-nav': 'search' }, icon('search', 16), 'Search'),
      h('a.nav-item', { href: '#/dashboard', 'data-nav': 'dashboard' }, icon('chart', 16), 'Analytics'))
    this.main = h('main.main', this.emptyState())
    this.status_dot = h('span.conn-dot', { title: 'connection' })
    const user = client.user
    this.sidebar = h('aside.sidebar',
      h('div.sidebar-head',
        h('div.brand', h('span.logo', icon('chat', 18)), 'Parley', this.status_dot),
        h('button.icon-btn', { title: 'Sign out', 'aria-label': 'Sign out', on: { click: () => { localStorage.removeItem(TOKEN_KEY); client.close(); signInView() } } }, icon('logout'))
      ),
      h('div.me', avatar({ id: user.id, name: user.name, kind: user.kind }, 'sm'), h('span', user.name), h('span.muted.small', client.tenant)),
      h('div.new-row',
        h('button.btn.primary.new-session', { on: { click: () => this.newSession() } }, icon('plus'), 'New session'),
        h('button.btn.from-template', { title: 'New session from a template', 'data-action': 'from-template', on: { click: () => this.newSession('template') } }, icon('template', 16), 'Template')),
      this.nav,
      h('div.search', icon('search', 16), this.search),
      this.searchHint,
      this.facets,
      this.list
    )
    this.shell = h('div.shell', this.sidebar, this.main)
    fill(root, this.shell)
    client.on('state', (/** @type {string} */ s) => { this.status_dot.dataset.state = s; this.status_dot.title = s })
    this.status_dot.dataset.state = client.state
    window.addEventListener('hashchange', () => this.route())
    window.addEventListener('focus', () => this.refresh())
    setInterval(() => this.refresh(), 20000)
  }

  emptyState () {
    return h('div.empty-main',
      h('div.empty-art', icon('chat', 40)),
      h('h2', 'Pick a session'),
      h('p.muted', 'Choose a conversation on the left, or start a new one.')
    )
  }

  async refresh () {
    try {
      const { items } = await this.client.rest.listSessions({ limit: 200, status: this.status === 'all' ? undefined : this.status })
      this.sessions = items
      this.renderList()
    } catch (err) {
      toast(`Could not load sessions: ${/** @type {Error} */ (err).message}`, 'error')
    }
  }

  renderList () {
    const tags = new Map()
    for (const s of this.sessions) for (const t of s.tags) tags.set(t, (tags.get(t) || 0) + 1)
    const chip = (/** @type {string} */ label, /** @type {boolean} */ active, /** @type {() => void} */ fn, /** @type {number|undefined} */ count) =>
      h(`button.chip${active ? '.active' : ''}`, { on: { click: fn }, 'aria-pressed': String(active) }, label, count !== undefined ? h('span.count', String(count)) : null)
    fill(this.facets, 
      h('div.facet-row', ...['active', 'archived', 'all'].map((st) => chip(st[0].toUpperCase() + st.slice(1), this.status === st, () => { this.status = st; this.refresh() }))),
      tags.size ? h('div.facet-row.tags', ...[...tags.entries()].sort((a, b) => b[1] - a[1]).map(([t, n]) => chip(`#${t}`, this.tag === t, () => { this.tag = this.tag === t ? null : t; this.renderList() }, n))) : null
    )
    const current = this.conversation?.sessionId
    const shown = this.sessions.filter((s) => (!this.tag || s.tags.includes(this.tag)) && (!this.query || (s.title || '').toLowerCase().includes(this.query) || s.tags.some((/** @type {string} */ t) => t.includes(this.query))))
    fill(this.list, ...shown.map((s) => h(`a.session-item${s.id === current ? '.active' : ''}`, { href: `#/s/${s.id}`, 'data-session': s.id },
      h('div.session-line', h('span.session-title', s.title || 'Untitled'), h('span.muted.small', shortTime(s.updated_at))),
      h('div.session-meta', s.status === 'archived' ? h('span.badge', 'archived') : null, ...s.tags.map((/** @type {string} */ t) => h('span.tag', `#${t}`)))
    )))
    if (!shown.length) this.list.appendChild(h('p.muted.empty-list', this.sessions.length ? 'No session matches.' : 'No sessions yet.'))
  }

  /** @param {'blank'|'template'} [mode] */
  newSession (mode = 'blank') {
    newSessionDialog(this.client, async (session) => {
      await this.refresh()
      location.hash = `#/s/${session.id}`
    }, mode)
  }

  /** `#/s/<id>[/m/<message>|/a/<annotation>]`, `#/search?q=`, `#/dashboard?period=&scope=&id=`. */
  async route () {
    const [path, search] = location.hash.replace(/^#/, '').split('?')
    const params = new URLSearchParams(search || '')
    const m = path.match(/^\/s\/([\w-]+)(?:\/([ma])\/([\w.-]+))?/)
    const id = m ? m[1] : null
    const page = id ? 'session' : path === '/search' || path === '/dashboard' ? path.slice(1) : ''
    for (const a of this.nav.querySelectorAll('.nav-item')) a.classList.toggle('active', /** @type {HTMLElement} */ (a).dataset.nav === page)
    this.shell.classList.toggle('in-session', !!page)
    if (page !== 'session') {
      this.conversation?.destroy()
      this.conversation = null
    }
    if (page === 'search' && this.viewName === 'search') {
      const view = /** @type {SearchView} */ (/** @type {unknown} */ (this.view))
      if ((params.get('q') || '') !== view.input.value) view.run(params.get('q') || '')
      return
    }
    if (page === 'dashboard' && this.viewName === 'dashboard') return
    this.view?.destroy?.()
    this.view = null
    this.viewName = ''
    if (page === 'search') {
      const view = new SearchView(this.client, params.get('q') || '')
      this.showView('search', view)
      this.search.value = ''
      this.query = ''
      this.searchHint.hidden = true
      this.renderList()
      await view.run(params.get('q') || '')
      return
    }
    if (page === 'dashboard') {
      // Chart.js stays out of the first load: the dashboard comes in its own chunk.
      const { Dashboard } = await import('./dashboard.js')
      const view = new Dashboard(this.client, params)
      this.showView('dashboard', view)
      await view.load()
      return
    }
    if (!id) {
      fill(this.main, this.emptyState())
      this.renderList()
      return
    }
    if (this.conversation?.sessionId !== id) {
      this.conversation?.destroy()
      this.conversation = new Conversation(this.client, id, {
        onTitle: () => this.refresh(),
        back: () => { location.hash = '' }
      })
      fill(this.main, this.conversation.el)
      this.renderList()
      try {
        await this.conversation.load()
      } catch (err) {
        fill(this.main, h('div.empty-main', h('h2', 'This session could not be opened'), h('p.muted', /** @type {Error} */ (err).message)))
        return
      }
    }
    if (m && m[2] === 'm') this.conversation?.focusMessage(m[3])
    else if (m && m[2] === 'a') this.conversation?.openThread(m[3])
  }

  /** @param {string} name @param {{el: HTMLElement, destroy?: () => void}} view */
  showView (name, view) {
    this.view = view
    this.viewName = name
    fill(this.main, view.el)
    this.renderList()
  }
}

async function start () {
  const token = takeToken()
  if (!token) { signInView(); return }
  fill(root, h('div.loading', h('span.spinner'), 'Connecting…'))
  const client = new ParleyClient({ url: location.origin, token })
  try {
    await client.connect()
  } catch (err) {
    client.close()
    if (err instanceof AuthError) localStorage.removeItem(TOKEN_KEY)
    signInView(err instanceof AuthError ? 'That token was refused. It may have expired.' : `Could not connect: ${/** @type {Error} */ (err).message}`)
    return
  }
  const ws = new Workspace(client)
  await ws.refresh()
  await ws.route()
}

start()
