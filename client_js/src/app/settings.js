// The session settings dialog: title, tags, archive or reopen.

import { h, icon } from './dom.js'

/**
 * @param {import('../sdk/index.js').ParleyClient} client
 * @param {any} session
 * @param {(session: any) => void} saved
 */
export function settingsDialog (client, session, saved) {
  const title = /** @type {HTMLInputElement} */ (h('input.input', { name: 'title', value: session.title, 'aria-label': 'Title' }))
  const tags = /** @type {HTMLInputElement} */ (h('input.input', { name: 'tags', value: session.tags.join(', '), 'aria-label': 'Tags' }))
  const archived = session.status === 'archived'
  const error = h('div.form-error')
  const save = async (/** @type {Record<string, unknown>} */ changes) => {
    try {
      saved(await client.rest.updateSession(session.id, changes))
      dialog.close()
    } catch (err) { error.textContent = /** @type {Error} */ (err).message }
  }
  const dialog = /** @type {HTMLDialogElement} */ (h('dialog.dialog',
    h('div.dialog-head', h('h3', 'Session'), h('button.icon-btn', { 'aria-label': 'Close', on: { click: () => dialog.close() } }, icon('close'))),
    h('label.field-label', 'Title'), title,
    h('label.field-label', 'Tags (comma separated)'), tags,
    error,
    h('div.dialog-actions.spread',
      h('button.btn', { 'data-action': 'archive', on: { click: () => save({ status: archived ? 'active' : 'archived' }) } }, icon('archive', 16), archived ? 'Reopen' : 'Archive'),
      h('button.btn.primary', { 'data-action': 'save-session', on: { click: () => save({ title: title.value.trim() || 'Untitled', tags: tags.value.split(',').map((t) => t.trim()).filter(Boolean) }) } }, 'Save'))))
  document.body.appendChild(dialog)
  dialog.addEventListener('close', () => dialog.remove())
  dialog.showModal()
}
