// A session's collaborative document (docs/documents.md) carried as `doc` frames on the main
// socket: a Y.Doc kept in sync with the server, an Awareness for presence, and helpers for the
// annotation schema so apps do not hand-build Y.Maps.

import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import { Emitter } from './emitter.js'
import { ConnectionError, RateLimitError, TimeoutError } from './errors.js'

const MESSAGE_SYNC = 0
const MESSAGE_AWARENESS = 1
const MESSAGE_AUTH = 2
const MESSAGE_QUERY_AWARENESS = 3

/** @param {Uint8Array} bytes */
export function toBase64 (bytes) {
  let s = ''
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(s)
}

/** @param {string} text */
export function fromBase64 (text) {
  const s = atob(text)
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i)
  return out
}

/** @returns {string} */
function newId () {
  return globalThis.crypto?.randomUUID ? globalThis.crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`
}

/** Plain-object view of one annotation Y.Map. @param {Y.Map<any>} m */
function annotationView (m) {
  const replies = m.get('replies')
  return {
    id: m.get('id'),
    message_id: m.get('message_id') ?? null,
    range: m.get('range') ?? null,
    kind: m.get('kind') ?? 'comment',
    body: m.get('body') ?? '',
    author: m.get('author') ?? null,
    created: m.get('created') ?? null,
    resolved: m.get('resolved') === true,
    resolved_by: m.get('resolved_by') ?? null,
    resolved_at: m.get('resolved_at') ?? null,
    replies: replies instanceof Y.Array ? replies.toArray() : []
  }
}

export class SessionDocument extends Emitter {
  /**
   * Use `client.document(sessionId)`; this constructor is internal.
   * @param {import('./client.js').ParleyClient} client
   * @param {string} sessionId
   */
  constructor (client, sessionId) {
    super()
    this.client = client
    this.session = sessionId
    this.doc = new Y.Doc()
    this.awareness = new awarenessProtocol.Awareness(this.doc)
    /** The caller's role for the document (`viewer` for a non-participant), set by join. */
    this.role = null
    this.synced = false
    this.closed = false
    this._onUpdate = (/** @type {Uint8Array} */ update, /** @type {any} */ origin) => {
      if (origin === this) return
      const e = encoding.createEncoder()
      encoding.writeVarUint(e, MESSAGE_SYNC)
      syncProtocol.writeUpdate(e, update)
      this._send(encoding.toUint8Array(e))
    }
    this._onAwareness = (/** @type {any} */ { added, updated, removed }, /** @type {any} */ origin) => {
      if (origin === this) {
        this.emit('presence', this.presence())
        return
      }
      const changed = [...added, ...updated, ...removed]
      if (changed.includes(this.doc.clientID)) {
        const e = encoding.createEncoder()
        encoding.writeVarUint(e, MESSAGE_AWARENESS)
        encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.doc.clientID]))
        this._send(encoding.toUint8Array(e))
      }
      this.emit('presence', this.presence())
    }
    this.doc.on('update', this._onUpdate)
    this.awareness.on('update', this._onAwareness)
    this.doc.getMap('annotations').observeDeep(() => this.emit('annotations', this.annotations()))
  }

  /**
   * Send one y-protocol message. With an id, so a refusal names it: it is reported as
   * `refused` (the change then lives only in this copy: reload to write again), and a
   * rate-limited message is sent again (updates are idempotent). A lost connection needs
   * nothing: the rejoin after the reconnect resyncs both sides.
   * @param {Uint8Array} bytes
   */
  _send (bytes) {
    if (this.closed) return
    const frame = { type: 'doc', session: this.session, data: toBase64(bytes) }
    const attempt = () => {
      if (this.closed) return
      this.client.request(frame).catch((/** @type {any} */ err) => {
        if (err instanceof ConnectionError || err instanceof TimeoutError) return
        if (err instanceof RateLimitError) {
          setTimeout(attempt, (err.retryAfter ?? 1) * 1000)
          return
        }
        this.emit('refused', `${err.code}: ${err.message}`)
      })
    }
    attempt()
  }

  /** (Re)join on the server: ack, then both sync steps. Called on connect and reconnect. */
  async _join () {
    this.synced = false
    const ack = await this.client.request({ type: 'doc_join', session: this.session })
    this.role = ack.role
    const e = encoding.createEncoder()
    encoding.writeVarUint(e, MESSAGE_SYNC)
    syncProtocol.writeSyncStep1(e, this.doc)
    this._send(encoding.toUint8Array(e))
    if (this.awareness.getLocalState() !== null) {
      const a = encoding.createEncoder()
      encoding.writeVarUint(a, MESSAGE_AWARENESS)
      encoding.writeVarUint8Array(a, awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.doc.clientID]))
      this._send(encoding.toUint8Array(a))
    }
  }

  /**
   * Join again, so the server reads this user's role afresh (after they became a participant,
   * their changes are accepted without waiting for the role cache to expire).
   */
  rejoin () {
    return this._join()
  }

  /** Handle one `doc` frame from the server. @param {string} data */
  _receive (data) {
    const decoder = decoding.createDecoder(fromBase64(data))
    const kind = decoding.readVarUint(decoder)
    if (kind === MESSAGE_SYNC) {
      const e = encoding.createEncoder()
      encoding.writeVarUint(e, MESSAGE_SYNC)
      const step = syncProtocol.readSyncMessage(decoder, e, this.doc, this)
      if (encoding.length(e) > 1) this._send(encoding.toUint8Array(e))
      if (step === syncProtocol.messageYjsSyncStep2 && !this.synced) {
        this.synced = true
        this.emit('synced', true)
      }
    } else if (kind === MESSAGE_AWARENESS) {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this)
    } else if (kind === MESSAGE_AUTH) {
      decoding.readVarUint(decoder)
      this.emit('refused', decoding.readVarString(decoder))
    } else if (kind === MESSAGE_QUERY_AWARENESS) {
      const e = encoding.createEncoder()
      encoding.writeVarUint(e, MESSAGE_AWARENESS)
      encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(this.awareness, [...this.awareness.getStates().keys()]))
      this._send(encoding.toUint8Array(e))
    }
  }

  /** Resolve once the first sync finished. @param {number} [timeoutMs] */
  whenSynced (timeoutMs = 10000) {
    return this.synced ? Promise.resolve(true) : this.once('synced', () => true, timeoutMs)
  }

  // Presence

  /**
   * Publish this client's presence fields (`viewing`, `selection`, `typing`, anything else);
   * the server fills in `user` from the token.
   * @param {Record<string, unknown>} fields
   */
  setPresence (fields) {
    this.awareness.setLocalState({ ...(this.awareness.getLocalState() || {}), ...fields })
  }

  /**
   * Everyone present (this client included), one entry per user, as the server stamped them.
   * @returns {{user: {id: string, name: string, color: string}, clientIds: number[], viewing: string|null, selection: any, typing: boolean}[]}
   */
  presence () {
    /** @type {Map<string, any>} */
    const byUser = new Map()
    for (const [clientId, state] of this.awareness.getStates()) {
      let user = state?.user
      if (clientId === this.doc.clientID) user = { ...(this.client.user || {}), ...(user || {}) }
      if (!user?.id) continue
      const entry = byUser.get(user.id) || { user, clientIds: [], viewing: null, selection: null, typing: false }
      entry.clientIds.push(clientId)
      entry.viewing = state.viewing ?? entry.viewing
      entry.selection = state.selection ?? entry.selection
      entry.typing = entry.typing || state.typing === true
      byUser.set(user.id, entry)
    }
    return [...byUser.values()]
  }

  // Annotations

  /** Every annotation, oldest first, as plain objects. */
  annotations () {
    const out = []
    for (const m of this.doc.getMap('annotations').values()) {
      if (m instanceof Y.Map && m.get('message_id')) out.push(annotationView(m))
    }
    return out.sort((a, b) => String(a.created).localeCompare(String(b.created)))
  }

  /**
   * Annotate a message (or the span `range` of its text, in JavaScript string indices).
   * @param {{messageId: string, range?: {start: number, end: number} | null, kind?: 'comment'|'highlight'|'label', body?: string}} a
   * @returns {string} the new annotation's id
   */
  annotate ({ messageId, range = null, kind = 'comment', body = '' }) {
    const id = newId()
    const fields = {
      id,
      message_id: messageId,
      range,
      kind,
      body,
      author: this.client.user?.id ?? null,
      created: new Date().toISOString(),
      resolved: false,
      replies: new Y.Array()
    }
    this.doc.transact(() => {
      this.doc.getMap('annotations').set(id, new Y.Map(Object.entries(fields)))
    })
    return id
  }

  /** Append a reply to an annotation's thread. @param {string} id @param {string} body */
  reply (id, body) {
    const m = this._annotation(id)
    let replies = m.get('replies')
    this.doc.transact(() => {
      if (!(replies instanceof Y.Array)) {
        replies = new Y.Array()
        m.set('replies', replies)
      }
      replies.push([{ id: newId(), author: this.client.user?.id ?? null, body, created: new Date().toISOString() }])
    })
  }

  /** Mark an annotation resolved (or reopen it with `false`). @param {string} id @param {boolean} [resolved] */
  resolve (id, resolved = true) {
    const m = this._annotation(id)
    this.doc.transact(() => {
      m.set('resolved', resolved)
      m.set('resolved_by', resolved ? this.client.user?.id ?? null : null)
      m.set('resolved_at', resolved ? new Date().toISOString() : null)
    })
  }

  /** Delete an annotation. @param {string} id */
  removeAnnotation (id) {
    this.doc.getMap('annotations').delete(id)
  }

  /** @param {string} id @returns {Y.Map<any>} */
  _annotation (id) {
    const m = this.doc.getMap('annotations').get(id)
    if (!(m instanceof Y.Map)) throw new Error(`no annotation ${id}`)
    return m
  }

  /** Stop syncing and drop the awareness timer (the socket is closing, or we leave). */
  _dispose () {
    this.closed = true
    this.doc.off('update', this._onUpdate)
    this.awareness.off('update', this._onAwareness)
    this.awareness.destroy()
    this.client._documents.delete(this.session)
  }

  /** Leave the document: presence ends for everyone at once. */
  async close () {
    if (this.closed) return
    this._dispose()
    try {
      await this.client.request({ type: 'doc_leave', session: this.session })
    } catch { /* the socket is gone: leaving happened with it */ }
  }
}
