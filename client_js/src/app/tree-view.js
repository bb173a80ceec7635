// The tree tab: every message as a nested list; the branch on screen is marked, a click shows
// the branch through that message.

import { h, icon, avatar } from './dom.js'

/** @param {any} conv the Conversation */
export function treeView (conv) {
  const onPath = new Set(conv.tree.path(conv.leaf).map((/** @type {any} */ m) => m.id))
  /** @param {string|null} parent @returns {HTMLElement|null} */
  const branch = (parent) => {
    const kids = conv.tree.children.get(parent) || []
    if (!kids.length) return null
    return h('ul.tree-list', ...kids.map((m) => {
      const who = conv.person(/** @type {any} */ (m).author)
      const mm = /** @type {any} */ (m)
      return h('li',
        h(`button.tree-node${onPath.has(m.id) ? '.on-path' : ''}${m.id === conv.leaf ? '.leaf' : ''}`, { 'data-node': m.id, on: { click: () => conv.switchTo(m.id) } },
          avatar(who, 'sm'),
          h('span.tree-author', who.name),
          h('span.tree-text', mm.deleted_at ? '(deleted)' : mm.text.slice(0, 90)),
          (conv.tree.children.get(m.id) || []).length > 1 ? h('span.fork', icon('branch', 12), String((conv.tree.children.get(m.id) || []).length)) : null),
        branch(m.id))
    }))
  }
  return h('div.tree-view',
    h('div.view-intro', h('h2', 'Conversation tree'), h('p.muted', 'Every edit and regenerated answer is a branch. Pick a message to read its branch.')),
    branch(null) || h('p.muted', 'No messages yet.'))
}
