// The client rule for streamed assistant answers (docs/protocol.md#stream-events): keep per
// stream the text and its `end` (UTF-8 byte offset given by the server), append deltas that
// follow on, drop duplicates, and ask for a snapshot when something is missing. Offsets are
// only compared, never counted here, so there is nothing to get wrong about encodings.

/**
 * @typedef {{id: string, assistant: {id: string, name: string, user_id: string} | null,
 *   promptId: string | null, askedBy: string | null, text: string, end: number,
 *   done: boolean, finishReason: string | null, messageId: string | null}} Stream
 */

export class StreamAssembler {
  /**
   * @param {{onChange: (stream: Stream, kind: string) => void, requestSnapshot: () => void}} hooks
   */
  constructor (hooks) {
    this.hooks = hooks
    /** @type {Map<string, Stream>} */
    this.streams = new Map()
    /** @type {Set<string>} streams that ended: later frames of them are ignored */
    this.ended = new Set()
    /** @type {any[]} deltas that wait for a snapshot */
    this.held = []
    this.snapshotPending = false
  }

  /** Running streams, oldest first. */
  running () {
    return [...this.streams.values()].filter((s) => !s.done)
  }

  /** @param {any} data @returns {Stream} */
  _stream (data) {
    let s = this.streams.get(data.stream_id)
    if (!s) {
      s = {
        id: data.stream_id,
        assistant: data.assistant ?? null,
        promptId: data.prompt_id ?? null,
        askedBy: data.asked_by ?? null,
        text: '',
        end: 0,
        done: false,
        finishReason: null,
        messageId: null
      }
      this.streams.set(s.id, s)
    } else if (data.assistant) {
      s.assistant = data.assistant
      s.promptId = data.prompt_id ?? s.promptId
      s.askedBy = data.asked_by ?? s.askedBy
    }
    return s
  }

  /**
   * Feed one event frame; returns true when it was a stream event (or an answer's message).
   * @param {{event: string, data: any}} frame
   */
  handle (frame) {
    const { event, data } = frame
    if (event === 'message.created') {
      const streamId = data.message?.metadata?.stream_id
      if (streamId) this._end(streamId, data.message.metadata.finish_reason ?? null, data.message.id, data.message.text)
      return false
    }
    if (!event.startsWith('stream.')) return false
    if (event === 'stream.snapshot') {
      this.snapshotPending = false
      for (const item of data.streams || []) {
        if (this.ended.has(item.stream_id)) continue
        const s = this._stream(item)
        if (item.length > s.end) {
          s.text = item.text
          s.end = item.length
          this.hooks.onChange(s, 'snapshot')
        }
      }
      const held = this.held
      this.held = []
      for (const d of held) this._delta(d, false)
      return true
    }
    if (event === 'stream.started' || event === 'stream.queued') {
      if (this.ended.has(data.stream_id)) return true
      const s = this._stream(data)
      this.hooks.onChange(s, event === 'stream.started' ? 'started' : 'queued')
      return true
    }
    if (event === 'stream.delta') {
      this._delta(data, true)
      return true
    }
    if (event === 'stream.finished') {
      this._end(data.stream_id, data.finish_reason, data.message_id, null)
      return true
    }
    if (event === 'stream.error') {
      const s = this.streams.get(data.stream_id)
      if (s) this.hooks.onChange(s, 'error')
      return true
    }
    return true
  }

  /** @param {any} d @param {boolean} mayRequest */
  _delta (d, mayRequest) {
    if (this.ended.has(d.stream_id)) return
    const s = this.streams.get(d.stream_id)
    if (s && d.end <= s.end) return
    if (s && d.offset === s.end) {
      s.text += d.text
      s.end = d.end
      this.hooks.onChange(s, 'delta')
      return
    }
    this.held.push(d)
    if (mayRequest && !this.snapshotPending) {
      this.snapshotPending = true
      this.hooks.requestSnapshot()
    }
  }

  /** @param {string} id @param {string|null} reason @param {string|null} messageId @param {string|null} text */
  _end (id, reason, messageId, text) {
    if (this.ended.has(id)) return
    this.ended.add(id)
    const s = this.streams.get(id)
    if (!s) return
    this.streams.delete(id)
    s.done = true
    s.finishReason = reason
    s.messageId = messageId
    if (text != null) s.text = text
    this.hooks.onChange(s, 'finished')
  }

  /** Forget held deltas (after a reconnect the subscribe's snapshot brings everything). */
  reset () {
    this.held = []
    this.snapshotPending = false
  }
}
