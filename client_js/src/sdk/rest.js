// REST helpers for /api/v1 (docs/configuration.md#rest-api). Every method returns the parsed
// JSON body or throws the typed error of errors.js.

import { ConnectionError, errorFromServer } from './errors.js'

/** @param {Record<string, unknown>} query */
function qs (query) {
  const parts = []
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
  }
  return parts.length ? `?${parts.join('&')}` : ''
}

const enc = encodeURIComponent

export class RestClient {
  /**
   * @param {{baseUrl: string, token: string, fetch?: typeof fetch}} options
   */
  constructor ({ baseUrl, token, fetch: fetchImpl }) {
    this.baseUrl = baseUrl.replace(/\/+$/, '')
    this.token = token
    this._fetch = fetchImpl || globalThis.fetch.bind(globalThis)
  }

  /**
   * @param {string} method
   * @param {string} path below /api/v1
   * @param {{body?: unknown, headers?: Record<string, string>}} [options]
   */
  async request (method, path, { body, headers = {} } = {}) {
    const res = await this._send(method, path, { body, headers })
    if (res.status === 204) return null
    const text = await res.text()
    let data = null
    try { data = text ? JSON.parse(text) : null } catch { data = null }
    if (!res.ok) {
      throw errorFromServer(data?.error || { code: 'http_error', message: `HTTP ${res.status}` }, res.status)
    }
    return data
  }

  /**
   * A GET whose answer is text (CSV), not JSON.
   * @param {string} path below /api/v1
   */
  async requestText (path) {
    const res = await this._send('GET', path, { headers: {} })
    const text = await res.text()
    if (!res.ok) {
      let data = null
      try { data = JSON.parse(text) } catch { data = null }
      throw errorFromServer(data?.error || { code: 'http_error', message: `HTTP ${res.status}` }, res.status)
    }
    return text
  }

  /**
   * @param {string} method @param {string} path
   * @param {{body?: unknown, headers: Record<string, string>}} options
   */
  async _send (method, path, { body, headers }) {
    try {
      return await this._fetch(`${this.baseUrl}/api/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers
        },
        body: body !== undefined ? JSON.stringify(body) : undefined
      })
    } catch (err) {
      throw new ConnectionError(`request to ${path} failed: ${/** @type {Error} */ (err).message}`)
    }
  }

  /** Who the token is: `{id, tenant, name, kind}`. */
  me () { return this.request('GET', '/me') }

  // Sessions
  /** @param {{status?: string, tag?: string, limit?: number, cursor?: string}} [query] */
  listSessions (query = {}) { return this.request('GET', `/sessions${qs(query)}`) }
  /** @param {{title?: string, tags?: string[], metadata?: object}} [body] */
  createSession (body = {}) { return this.request('POST', '/sessions', { body }) }
  /** @param {string} id */
  getSession (id) { return this.request('GET', `/sessions/${enc(id)}`) }
  /** @param {string} id @param {object} changes */
  updateSession (id, changes) { return this.request('PATCH', `/sessions/${enc(id)}`, { body: changes }) }
  /** @param {string} id */
  archiveSession (id) { return this.request('POST', `/sessions/${enc(id)}/archive`) }
  /** @param {string} id */
  deleteSession (id) { return this.request('DELETE', `/sessions/${enc(id)}`) }

  // Messages and events
  /** @param {string} id @param {{after_seq?: number, before_seq?: number, limit?: number}} [query] */
  listMessages (id, query = {}) { return this.request('GET', `/sessions/${enc(id)}/messages${qs(query)}`) }
  /** Every message of the session, oldest first (pages through the list). @param {string} id */
  async allMessages (id) {
    const out = []
    let after = 0
    for (;;) {
      const { items } = await this.listMessages(id, { after_seq: after, limit: 500 })
      out.push(...items)
      if (items.length < 500) return out
      after = items[items.length - 1].seq
    }
  }

  /** @param {string} id @param {{text?: string, parts?: object[], parent_id?: string|null, metadata?: object, client_id?: string}} body */
  postMessage (id, body) { return this.request('POST', `/sessions/${enc(id)}/messages`, { body }) }
  /** @param {string} id @param {string} messageId @param {object} changes */
  editMessage (id, messageId, changes) { return this.request('PATCH', `/sessions/${enc(id)}/messages/${enc(messageId)}`, { body: changes }) }
  /** @param {string} id @param {string} messageId */
  deleteMessage (id, messageId) { return this.request('DELETE', `/sessions/${enc(id)}/messages/${enc(messageId)}`) }
  /** @param {string} id @param {{after_seq?: number, limit?: number}} [query] */
  listEvents (id, query = {}) { return this.request('GET', `/sessions/${enc(id)}/events${qs(query)}`) }

  // Participants and presence
  /** @param {string} id */
  listParticipants (id) { return this.request('GET', `/sessions/${enc(id)}/participants`) }
  /** @param {string} id @param {string} userId @param {string} [role] */
  addParticipant (id, userId, role) { return this.request('POST', `/sessions/${enc(id)}/participants`, { body: { user_id: userId, ...(role ? { role } : {}) } }) }
  /** @param {string} id @param {string} userId */
  removeParticipant (id, userId) { return this.request('DELETE', `/sessions/${enc(id)}/participants/${enc(userId)}`) }
  /** @param {string} id */
  presence (id) { return this.request('GET', `/sessions/${enc(id)}/presence`) }

  // Document
  /** @param {string} id @param {{message_id?: string}} [query] */
  listAnnotations (id, query = {}) { return this.request('GET', `/sessions/${enc(id)}/annotations${qs(query)}`) }
  /** @param {string} id */
  getDocument (id) { return this.request('GET', `/sessions/${enc(id)}/document`) }

  // Assistants and streams
  /** @param {string} id */
  listAssistants (id) { return this.request('GET', `/sessions/${enc(id)}/assistants`) }
  /** @param {string} id @param {object} body */
  addAssistant (id, body) { return this.request('POST', `/sessions/${enc(id)}/assistants`, { body }) }
  /** @param {string} id @param {string} name @param {object} changes */
  updateAssistant (id, name, changes) { return this.request('PATCH', `/sessions/${enc(id)}/assistants/${enc(name)}`, { body: changes }) }
  /** @param {string} id @param {string} name */
  removeAssistant (id, name) { return this.request('DELETE', `/sessions/${enc(id)}/assistants/${enc(name)}`) }
  /** @param {string} id @param {string} name @param {{text?: string, message_id?: string, parent_id?: string, client_id?: string}} [body] */
  ask (id, name, body = {}) { return this.request('POST', `/sessions/${enc(id)}/assistants/${enc(name)}/ask`, { body }) }
  /** @param {string} id */
  listStreams (id) { return this.request('GET', `/sessions/${enc(id)}/streams`) }
  /** @param {string} id @param {string} streamId */
  stopStream (id, streamId) { return this.request('POST', `/sessions/${enc(id)}/streams/${enc(streamId)}/stop`) }

  // Search and intelligence (docs/intelligence.md)
  /** Full-text search with filters and facets. @param {Record<string, any>} query */
  search (query) { return this.request('GET', `/search${qs(lists(query))}`) }
  /** The same with a structured query as the body (e.g. what parseSearch returned). @param {Record<string, any>} query */
  searchQuery (query) { return this.request('POST', '/search', { body: query }) }
  /** A sentence ("my conversations about AI from last week") as a structured query. @param {string} q */
  parseSearch (q) { return this.request('POST', '/search/parse', { body: { q } }) }
  /** @param {string} id */
  insights (id) { return this.request('GET', `/sessions/${enc(id)}/insights`) }
  /** @param {Record<string, any>} [query] scope, id, from, to, by (a list) */
  analytics (query = {}) { return this.request('GET', `/analytics${qs(lists(query))}`) }
  /** The same numbers as CSV text. @param {Record<string, any>} [query] */
  analyticsCsv (query = {}) { return this.requestText(`/analytics${qs({ ...lists(query), format: 'csv' })}`) }

  // Templates (docs/integrations.md)
  listTemplates () { return this.request('GET', '/templates') }
  /** @param {string} name */
  getTemplate (name) { return this.request('GET', `/templates/${enc(name)}`) }
  /** @param {{template: string, variables?: Record<string, string>, title?: string}} body */
  createSessionFromTemplate (body) { return this.request('POST', '/sessions/from-template', { body }) }
}

/** Lists in a query string are comma separated. @param {Record<string, any>} query */
function lists (query) {
  return Object.fromEntries(Object.entries(query).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v]))
}
