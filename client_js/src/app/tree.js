// The conversation tree, without I/O: messages form a tree through `parent_id`; the view shows
// one path from the root to a leaf, and switching a branch picks the newest leaf below it.
//
// A message without `parent_id` follows the message before it (by seq), so plain linear chats
// (bots, REST clients that never set a parent) read as one line. The workspace always sets
// `parent_id`, and marks a new first message (an edit of the first one) with
// `metadata.root = true`.

/**
 * @typedef {{id: string, seq: number, parent_id: string|null, metadata?: any}} Msg
 */

export class ConversationTree {
  constructor () {
    /** @type {Map<string, Msg>} */
    this.byId = new Map()
    /** @type {Map<string|null, Msg[]>} children by parent id (null: roots), oldest first */
    this.children = new Map()
    /** @type {Map<string, string|null>} */
    this.parentOf = new Map()
    /** @type {Msg|null} */
    this.last = null
  }

  /** @param {Msg[]} messages in seq order */
  static from (messages) {
    const t = new ConversationTree()
    for (const m of messages) t.add(m)
    return t
  }

  /** Add a message (in seq order), or replace one already known (edits, deletions). @param {Msg} m */
  add (m) {
    if (this.byId.has(m.id)) {
      this.byId.set(m.id, m)
      return false
    }
    let parent = m.parent_id ?? null
    if (parent === null && !m.metadata?.root && this.last) parent = this.last.id
    if (parent !== null && !this.byId.has(parent)) parent = null
    this.byId.set(m.id, m)
    this.parentOf.set(m.id, parent)
    const list = this.children.get(parent) || []
    list.push(m)
    this.children.set(parent, list)
    if (!this.last || m.seq > this.last.seq) this.last = m
    return true
  }

  /** @param {string} id */
  parent (id) { return this.parentOf.get(id) ?? null }

  /** The messages from the root to `leafId`. @param {string|null} leafId */
  path (leafId) {
    const out = []
    let id = leafId
    while (id !== null && this.byId.has(id)) {
      out.push(/** @type {Msg} */ (this.byId.get(id)))
      id = this.parent(id)
    }
    return out.reverse()
  }

  /** The message and its siblings (same parent), oldest first. @param {string} id */
  siblings (id) {
    return this.children.get(this.parent(id)) || []
  }

  /** The newest message in the subtree of `id` (a leaf: children are newer than parents). @param {string|null} id */
  newestLeaf (id) {
    let best = id === null ? null : this.byId.get(id) || null
    const stack = [...(this.children.get(id) || [])]
    while (stack.length) {
      const m = /** @type {Msg} */ (stack.pop())
      if (!best || m.seq > best.seq) best = m
      stack.push(...(this.children.get(m.id) || []))
    }
    return best ? best.id : null
  }

  /** Whether `ancestor` is `id` or above it. @param {string} ancestor @param {string} id */
  isAncestor (ancestor, id) {
    /** @type {string|null} */
    let cur = id
    while (cur !== null) {
      if (cur === ancestor) return true
      cur = this.parent(cur)
    }
    return false
  }

  /** Number of messages with more than one child: the places where the conversation forks. */
  forks () {
    let n = 0
    for (const list of this.children.values()) if (list.length > 1) n++
    return n
  }
}
