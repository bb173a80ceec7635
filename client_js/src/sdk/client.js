// The Parley socket client: one WebSocket for events, writes, streams and documents, with
// reconnect (exponential backoff with jitter) and resume by `seq` (docs/protocol.md#ordering-and-recovery).

import { Emitter } from './emitter.js'
import { AuthError, ConnectionError, ParleyError, TimeoutError, errorFromServer } from './errors.js'
import { RestClient } from './rest.js'
import { SessionDocument } from './document.js'
import { StreamAssembler } from './streams.js'

/** Close codes after which reconnecting would only fail again. */
const FATAL_CLOSE = new Set([4001, 4029])

/** @returns {string} */
function newClientId () {
  return globalThis.crypto?.randomUUID ? globalThis.crypto.randomUUID() : `c-${Date.now()}-${Math.random().toString(16).slice(2)}`
}

/** One session this client follows: its events, its last seq, its running answers. */
export class Subscription extends Emitter {
  /** @param {ParleyClient} client @param {string} sessionId @param {number|null} sinceSeq */
  constructor (client, sessionId, sinceSeq) {
    super()
    this.client = client
    this.session = sessionId
    /** The seq of the last durable event processed; the resume position. */
    this.lastSeq = sinceSeq
    /** Users subscribed right now (from the ack, then presence events). @type {Map<string, {user_id: string, name: string, kind: string}>} */
    this.presence = new Map()
    /** Users typing now, by id, with their display name. @type {Map<string, string>} */
    this.typing = new Map()
    /** @type {Map<string, ReturnType<typeof setTimeout>>} */
    this._typingTimers = new Map()
    this.active = true
    this.assembler = new StreamAssembler({
      onChange: (stream, kind) => this.emit('stream', stream, kind),
      requestSnapshot: () => { this.client._sendFrame({ type: 'streams', session: this.session }) }
    })
  }

  /** Running assistant answers with their text so far. */
  get streams () { return this.assembler.running() }

  /** @param {any} frame */
  _event (frame) {
    if (!frame.ephemeral) {
      if (this.lastSeq !== null && frame.seq <= this.lastSeq) return
      this.lastSeq = frame.seq
    }
    const { event, data } = frame
    if (event === 'presence.joined') {
      this.presence.set(data.user_id, data)
      this.emit('presence', [...this.presence.values()])
    } else if (event === 'presence.left') {
      this.presence.delete(data.user_id)
      this._typingOff(data.user_id)
      this.emit('presence', [...this.presence.values()])
    } else if (event === 'typing') {
      if (data.user_id !== this.client.user?.id) {
        if (data.active) {
          this.typing.set(data.user_id, data.name)
          clearTimeout(this._typingTimers.get(data.user_id))
          // A typist who stops without saying so (closed tab) stops showing after a while.
          this._typingTimers.set(data.user_id, setTimeout(() => this._typingOff(data.user_id), 6000))
          this.emit('typing', [...this.typing.entries()].map(([id, name]) => ({ user_id: id, name })))
        } else {
          this._typingOff(data.user_id)
        }
      }
    } else if (event === 'message.created') {
      this._typingOff(data.message.author)
    }
    this.assembler.handle(frame)
    this.emit('event', frame)
    this.emit(event, data, frame)
  }

  /** @param {string} userId */
  _typingOff (userId) {
    clearTimeout(this._typingTimers.get(userId))
    this._typingTimers.delete(userId)
    if (this.typing.delete(userId)) {
      this.emit('typing', [...this.typing.entries()].map(([id, name]) => ({ user_id: id, name })))
    }
  }

  // Writes on this session (shortcuts for the client's methods)
  /** @param {string | {text?: string, parts?: object[], parentId?: string|null, metadata?: object, clientId?: string}} message */
  send (message) { return this.client.send(this.session, message) }
  /** @param {string} messageId @param {{text?: string, parts?: object[], metadata?: object}} changes */
  edit (messageId, changes) { return this.client.edit(this.session, messageId, changes) }
  /** @param {string} messageId */
  delete (messageId) { return this.client.delete(this.session, messageId) }
  /** @param {boolean} [active] */
  setTyping (active = true) { return this.client.typing(this.session, active) }
  /** @param {string} assistant @param {{text?: string, messageId?: string, parentId?: string, clientId?: string}} [options] */
  ask (assistant, options) { return this.client.ask(this.session, assistant, options) }
  /** @param {string} streamId */
  stop (streamId) { return this.client.stop(this.session, streamId) }

  /** Stop following the session. */
  async unsubscribe () {
    this.active = false
    this.client._subscriptions.delete(this.session)
    for (const t of this._typingTimers.values()) clearTimeout(t)
    try { await this.client.request({ type: 'unsubscribe', session: this.session }) } catch { /* gone with the socket */ }
  }
}

export class ParleyClient extends Emitter {
  /**
   * @param {{url: string, token: string, WebSocket?: any, fetch?: typeof fetch,
   *   reconnect?: boolean, minBackoffMs?: number, maxBackoffMs?: number, requestTimeoutMs?: number}} options
   *   `url` is the server's base URL (`http://host:port`); `WebSocket` defaults to the global one
   *   (in Node 20 pass the `ws` package's).
   */
  constructor (options) {
    super()
    this.url = options.url.replace(/\/+$/, '')
    this.token = options.token
    this.WebSocket = options.WebSocket || globalThis.WebSocket
    if (!this.WebSocket) throw new ParleyError('no_websocket', 'no WebSocket implementation: pass options.WebSocket (e.g. the ws package)')
    this.reconnect = options.reconnect !== false
    this.minBackoffMs = options.minBackoffMs ?? 250
    this.maxBackoffMs = options.maxBackoffMs ?? 10000
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15000
    this.rest = new RestClient({ baseUrl: this.url, token: this.token, fetch: options.fetch })
    /** `idle` | `connecting` | `open` | `reconnecting` | `closed` */
    this.state = 'idle'
    /** The token's user `{id, name, kind}`, from the welcome. */
    this.user = null
    this.tenant = null
    /** @type {Map<string, Subscription>} */
    this._subscriptions = new Map()
    /** @type {Map<string, SessionDocument>} */
    this._documents = new Map()
    /** @type {Map<string, {frame: any, resolve: Function, reject: Function, timer: any, retry: boolean}>} */
    this._pending = new Map()
    this._nextId = 1
    this._attempt = 0
    this._ws = null
    this._closedByUser = false
    this._reconnectTimer = null
  }

  /** Open the socket and wait for the welcome. Rejects with AuthError on a bad token. */
  connect () {
    this._closedByUser = false
    return new Promise((resolve, reject) => {
      const offOk = this.on('open', () => { offOk(); offFail(); resolve(this) })
      const offFail = this.on('fatal', (/** @type {Error} */ err) => { offOk(); offFail(); reject(err) })
      this._open()
    })
  }

  _setState (/** @type {string} */ state) {
    if (this.state === state) return
    this.state = state
    this.emit('state', state)
  }

  _open () {
    this._setState(this._attempt === 0 ? 'connecting' : 'reconnecting')
    const wsUrl = this.url.replace(/^http/, 'ws') + `/ws?token=${encodeURIComponent(this.token)}&format=json`
    const ws = new this.WebSocket(wsUrl)
    this._ws = ws
    let welcomed = false
    ws.onmessage = (/** @type {{data: any}} */ ev) => {
      const frame = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data))
      if (frame.type === 'welcome') {
        welcomed = true
        this._attempt = 0
        this.user = frame.user
        this.tenant = frame.tenant
        this.limits = frame.limits
        this._setState('open')
        this._resume().catch((err) => this.emit('error', err))
        this.emit('open', frame)
        return
      }
      this._frame(frame)
    }
    ws.onclose = (/** @type {{code: number, reason: string}} */ ev) => {
      if (this._ws !== ws) return
      this._ws = null
      this._dropPending()
      if (FATAL_CLOSE.has(ev.code)) {
        const err = ev.code === 4001
          ? new AuthError(ev.reason || 'the token was refused')
          : new ParleyError('too_many_errors', ev.reason || 'closed after too many errors')
        this._setState('closed')
        this.emit('fatal', err)
        this.emit('close', ev)
        return
      }
      this.emit('close', ev)
      if (this._closedByUser || !this.reconnect) {
        this._setState('closed')
        if (!welcomed) this.emit('fatal', new ConnectionError(`connection closed (${ev.code})`))
        return
      }
      this._scheduleReconnect()
    }
    ws.onerror = () => { /* onclose follows and decides */ }
  }

  _scheduleReconnect () {
    this._attempt += 1
    const base = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** (this._attempt - 1))
    const delay = base / 2 + Math.random() * base / 2
    this._setState('reconnecting')
    this._reconnectTimer = setTimeout(() => { this._reconnectTimer = null; this._open() }, delay)
  }

  /** After (re)connecting: resubscribe from the last seq, rejoin documents, resend sends. */
  async _resume () {
    const retries = [...this._pending.values()].filter((p) => p.retry)
    for (const sub of this._subscriptions.values()) {
      sub.assembler.reset()
      this._subscribeFrame(sub).catch((err) => sub.emit('error', err))
    }
    for (const doc of this._documents.values()) doc._join().catch((err) => doc.emit('error', err))
    for (const p of retries) this._sendFrame(p.frame)
  }

  /** Fail the requests that cannot be retried; keep idempotent ones for the next socket. */
  _dropPending () {
    for (const [id, p] of this._pending) {
      if (p.retry && !this._closedByUser && this.reconnect) continue
      clearTimeout(p.timer)
      this._pending.delete(id)
      p.reject(new ConnectionError(`the connection closed before ${p.frame.type} was answered`))
    }
  }

  /** @param {any} frame */
  _frame (frame) {
    if (frame.type === 'event') {
      this._subscriptions.get(frame.session)?._event(frame)
      this.emit('event', frame)
      return
    }
    if (frame.type === 'doc') {
      this._documents.get(frame.session)?._receive(frame.data)
      return
    }
    const p = frame.ref !== null && frame.ref !== undefined ? this._pending.get(String(frame.ref)) : undefined
    if (frame.type === 'ack' || frame.type === 'pong') {
      if (!p) return
      clearTimeout(p.timer)
      this._pending.delete(String(frame.ref))
      p.resolve(frame)
    } else if (frame.type === 'error') {
      const err = errorFromServer(frame)
      if (p) {
        clearTimeout(p.timer)
        this._pending.delete(String(frame.ref))
        p.reject(err)
      } else {
        this.emit('error', err)
      }
    }
  }

  /** @param {any} frame */
  _sendFrame (frame) {
    if (this._ws && this.state === 'open') this._ws.send(JSON.stringify(frame))
  }

  /**
   * Send a frame with an id and resolve with its ack (reject with a typed error).
   * `retry`: keep it across a reconnect and send it again (only for idempotent frames).
   * @param {any} frame
   * @param {{retry?: boolean, timeoutMs?: number}} [options]
   * @returns {Promise<any>}
   */
  request (frame, { retry = false, timeoutMs } = {}) {
    const id = `r${this._nextId++}`
    const full = { ...frame, id }
    return new Promise((resolve, reject) => {
      if (this.state !== 'open' && !retry) {
        reject(new ConnectionError(`not connected (${this.state})`))
        return
      }
      const timer = setTimeout(() => {
        this._pending.delete(id)
        reject(new TimeoutError(`no answer to ${frame.type} within ${timeoutMs ?? this.requestTimeoutMs} ms`))
      }, timeoutMs ?? this.requestTimeoutMs)
      this._pending.set(id, { frame: full, resolve, reject, timer, retry })
      this._sendFrame(full)
    })
  }

  /** @param {Subscription} sub @returns {Promise<any>} */
  async _subscribeFrame (sub) {
    /** @type {Record<string, any>} */
    const frame = { type: 'subscribe', session: sub.session }
    if (sub.lastSeq !== null) frame.since_seq = sub.lastSeq
    let ack
    try {
      ack = await this.request(frame, { timeoutMs: 60000 })
    } catch (err) {
      // Saved seq ahead of the server (restored backup): start over from what it has.
      const e = /** @type {any} */ (err)
      if (e.code === 'invalid_request' && e.details?.last_seq !== undefined) {
        sub.lastSeq = e.details.last_seq
        return this._subscribeFrame(sub)
      }
      throw err
    }
    if (sub.lastSeq === null) sub.lastSeq = ack.seq
    sub.presence = new Map((ack.presence || []).map((/** @type {any} */ p) => [p.user_id, p]))
    sub.emit('presence', [...sub.presence.values()])
    sub.emit('subscribed', ack)
    return ack
  }

  /**
   * Follow a session. `sinceSeq`: 0 replays the whole history, a seq replays what came after
   * it, undefined starts from now. Reconnects resume from the last seq seen.
   * @param {string} sessionId
   * @param {{sinceSeq?: number, onEvent?: (frame: any) => void}} [options]
   */
  async subscribe (sessionId, { sinceSeq, onEvent } = {}) {
    let sub = this._subscriptions.get(sessionId)
    if (!sub) {
      sub = new Subscription(this, sessionId, sinceSeq ?? null)
      this._subscriptions.set(sessionId, sub)
    }
    if (onEvent) sub.on('event', onEvent)
    try {
      await this._subscribeFrame(sub)
    } catch (err) {
      this._subscriptions.delete(sessionId)
      throw err
    }
    return sub
  }

  /**
   * Join a session's collaborative document (annotations, presence) over this socket.
   * @param {string} sessionId
   * @returns {Promise<SessionDocument>}
   */
  async document (sessionId) {
    let doc = this._documents.get(sessionId)
    if (doc) return doc
    doc = new SessionDocument(this, sessionId)
    this._documents.set(sessionId, doc)
    try {
      await doc._join()
    } catch (err) {
      this._documents.delete(sessionId)
      throw err
    }
    return doc
  }

  /**
   * Post a message; resolves with the ack after it is committed. Retried across reconnects
   * with the same client_id, so it is stored exactly once.
   * @param {string} sessionId
   * @param {string | {text?: string, parts?: object[], parentId?: string|null, metadata?: object, clientId?: string}} message
   */
  send (sessionId, message) {
    const m = typeof message === 'string' ? { text: message } : message
    /** @type {Record<string, any>} */
    const frame = { type: 'send', session: sessionId, client_id: m.clientId || newClientId() }
    if (m.text !== undefined) frame.text = m.text
    if (m.parts) frame.parts = m.parts
    if (m.parentId) frame.parent_id = m.parentId
    if (m.metadata) frame.metadata = m.metadata
    return this.request(frame, { retry: true })
  }

  /** @param {string} sessionId @param {string} messageId @param {{text?: string, parts?: object[], metadata?: object}} changes */
  edit (sessionId, messageId, changes) {
    return this.request({ type: 'edit', session: sessionId, message_id: messageId, ...changes })
  }

  /** @param {string} sessionId @param {string} messageId */
  delete (sessionId, messageId) {
    return this.request({ type: 'delete', session: sessionId, message_id: messageId })
  }

  /** Tell the session's subscribers that this user is (or stopped) typing. Fire and forget. @param {string} sessionId @param {boolean} [active] */
  typing (sessionId, active = true) {
    this._sendFrame({ type: 'typing', session: sessionId, active })
  }

  /**
   * Ask an assistant to answer (`text` is posted first as the prompt; else `messageId`, else
   * the latest message). Resolves once the answer started or was queued.
   * @param {string} sessionId
   * @param {string} assistant
   * @param {{text?: string, messageId?: string, parentId?: string, clientId?: string}} [options]
   */
  ask (sessionId, assistant, options = {}) {
    /** @type {Record<string, any>} */
    const frame = { type: 'ask', session: sessionId, assistant }
    if (options.text !== undefined) {
      frame.text = options.text
      frame.client_id = options.clientId || newClientId()
    }
    if (options.messageId) frame.message_id = options.messageId
    if (options.parentId) frame.parent_id = options.parentId
    return this.request(frame, { retry: frame.client_id !== undefined })
  }

  /** Stop a running (or queued) answer. @param {string} sessionId @param {string} streamId */
  stop (sessionId, streamId) {
    return this.request({ type: 'stop', session: sessionId, stream_id: streamId })
  }

  /** Round trip to the server. */
  ping () { return this.request({ type: 'ping' }) }

  /** Close for good (no reconnect). */
  close () {
    this._closedByUser = true
    if (this._reconnectTimer) clearTimeout(this._reconnectTimer)
    const ws = this._ws
    if (ws) ws.close(1000)
    else this._setState('closed')
    this._dropPending()
    for (const p of this._pending.values()) { clearTimeout(p.timer); p.reject(new ConnectionError('client closed')) }
    this._pending.clear()
    for (const doc of [...this._documents.values()]) doc._dispose()
    for (const sub of this._subscriptions.values()) {
      for (const t of sub._typingTimers.values()) clearTimeout(t)
    }
  }
}
