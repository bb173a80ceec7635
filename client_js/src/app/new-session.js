// "New session": a blank one (title and tags), or one from a template (GET /api/v1/templates:
// the built-in library and the tenant's own) with its assistants, tags, notes and annotations,
// made by POST /api/v1/sessions/from-template once its variables are filled in.

import { h, fill, icon } from './dom.js'

/**
 * A template's text with `${name}` / `$name` replaced by the values given so far (unknown
 * names stay as they are), to preview the title.
 * @param {string} pattern @param {Record<string, string>} values
 */
export function renderPattern (pattern, values) {
  return pattern.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, a, b) => {
    const v = values[a || b]
    return v ? v : all
  })
}

/** A variable in a pattern as a readable placeholder: "priority-${priority}" → "priority-‹priority›". @param {string} text */
const placeholders = (text) => text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_all, a, b) => `‹${a || b}›`)

/** "customer-support" → "Customer support". @param {string} name */
const nice = (name) => name.charAt(0).toUpperCase() + name.slice(1).replace(/[-_]+/g, ' ')

/**
 * @param {import('../sdk/index.js').ParleyClient} client
 * @param {(session: any) => void} created
 * @param {'blank'|'template'} [start]
 */
export function newSessionDialog (client, created, start = 'blank') {
  const body = h('div.new-body')
  const tabs = h('div.segmented', { role: 'tablist' })
  const error = h('div.form-error', { role: 'alert' })
  const dialog = /** @type {HTMLDialogElement} */ (h('dialog.dialog.wide.new-session-dialog',
    h('div.dialog-head', h('h3', 'New session'), h('button.icon-btn', { 'aria-label': 'Close', on: { click: () => dialog.close() } }, icon('close'))),
    tabs, body, error))
  /** @type {any[]|null} */
  let templates = null

  const show = (/** @type {'blank'|'template'} */ mode) => {
    error.textContent = ''
    fill(tabs, ...[['blank', 'Blank'], ['template', 'From template']].map(([m, label]) =>
      h(`button${m === mode ? '.active' : ''}`, { role: 'tab', 'aria-selected': String(m === mode), 'data-mode': m, on: { click: () => show(/** @type {any} */ (m)) } }, label)))
    if (mode === 'blank') blank()
    else pickTemplate()
  }

  // The message names the first problem; the others follow it.
  const fail = (/** @type {any} */ err) => {
    const more = Array.isArray(err.details) ? err.details.slice(1).map((/** @type {any} */ d) => `${d.field}: ${d.problem}`) : []
    error.textContent = [err.message, ...more].join('; ')
  }

  const blank = () => {
    const title = /** @type {HTMLInputElement} */ (h('input.input', { name: 'title', placeholder: 'What is it about?', 'aria-label': 'Title' }))
    const tags = /** @type {HTMLInputElement} */ (h('input.input', { name: 'tags', placeholder: 'planning, research', 'aria-label': 'Tags' }))
    const submit = async () => {
      try {
        created(await client.rest.createSession({ title: title.value.trim() || 'Untitled', tags: tags.value.split(',').map((t) => t.trim()).filter(Boolean) }))
        dialog.close()
      } catch (err) { fail(err) }
    }
    for (const input of [title, tags]) input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); submit() } })
    fill(body,
      h('label.field-label', 'Title'), title,
      h('label.field-label', 'Tags (comma separated)'), tags,
      h('div.dialog-actions',
        h('button.btn', { on: { click: () => dialog.close() } }, 'Cancel'),
        h('button.btn.primary', { 'data-action': 'create-blank', on: { click: submit } }, 'Create')))
    title.focus()
  }

  const pickTemplate = async () => {
    if (!templates) {
      fill(body, h('div.loading.small-loading', h('span.spinner'), 'Loading templates…'))
      try {
        templates = (await client.rest.listTemplates()).items
      } catch (err) { fail(err); return }
    }
    const list = /** @type {any[]} */ (templates)
    fill(body,
      h('p.muted.small.picker-intro', 'A template starts the session with its assistants, tags, notes and comments.'),
      h('div.template-list', { role: 'list' }, ...list.map((t) => h('button.template-card', { role: 'listitem', 'data-template': t.name, on: { click: () => fillIn(t) } },
        h('div.template-top', h('strong', nice(t.name)), h(`span.badge${t.source === 'builtin' ? '' : '.ai'}`, t.source === 'builtin' ? 'built-in' : 'workspace')),
        t.description ? h('p.template-desc', t.description) : null,
        h('div.template-meta',
          ...t.tags.map((/** @type {string} */ tag) => h('span.tag', `#${placeholders(tag)}`)),
          ...t.assistants.map((/** @type {any} */ a) => h('span.assistant-pill', icon('bot', 13), a.name)),
          t.notes.length ? h('span.muted.small', `${t.notes.length} note${t.notes.length > 1 ? 's' : ''}`) : null)))),
      list.length ? null : h('p.muted', 'No templates yet.'))
  }

  /** The chosen template: its variables, a live title preview, create. @param {any} t */
  const fillIn = (t) => {
    error.textContent = ''
    const vars = Object.entries(t.variables || {})
    /** @type {Map<string, HTMLInputElement>} */
    const inputs = new Map()
    const preview = h('span.title-preview')
    const override = /** @type {HTMLInputElement} */ (h('input.input', { name: 'title', placeholder: 'Leave empty to use the pattern', 'aria-label': 'Title (instead of the pattern)' }))
    const values = () => Object.fromEntries([...inputs].map(([k, input]) => [k, input.value.trim()]).filter(([, v]) => v))
    const update = () => { preview.textContent = t.title ? renderPattern(t.title, values()) : 'Untitled' }
    const fields = vars.map(([name, spec]) => {
      const required = spec.required ?? spec.default === null
      const input = /** @type {HTMLInputElement} */ (h('input.input', { name: `var-${name}`, value: spec.default ?? '', placeholder: spec.description || name, required, 'aria-label': name, on: { input: update } }))
      inputs.set(name, input)
      return h('div.var-field',
        h('label.field-label', name.replace(/_/g, ' '), required ? h('span.req', { title: 'required' }, ' *') : null),
        input,
        spec.description ? h('div.muted.small.var-help', spec.description) : null)
    })
    const submit = async () => {
      const missing = [...inputs].find(([name, input]) => input.required && !input.value.trim() && name)
      if (missing) { error.textContent = `${missing[0]} is required`; missing[1].focus(); return }
      try {
        const title = override.value.trim()
        created(await client.rest.createSessionFromTemplate({ template: t.name, variables: values(), ...(title ? { title } : {}) }))
        dialog.close()
      } catch (err) { fail(err) }
    }
    fill(body,
      h('div.template-chosen',
        h('button.icon-btn.sm', { 'aria-label': 'Back to the templates', on: { click: () => { error.textContent = ''; pickTemplate() } } }, icon('back', 16)),
        h('div', h('strong', nice(t.name)), t.description ? h('p.muted.small', t.description) : null)),
      h('div.template-summary',
        t.assistants.length ? h('div', h('span.muted.small', 'Assistants '), ...t.assistants.map((/** @type {any} */ a) => h('span.assistant-pill', { title: a.system_prompt }, icon('bot', 13), a.name))) : null,
        t.tags.length ? h('div', h('span.muted.small', 'Tags '), ...t.tags.map((/** @type {string} */ tag) => h('span.tag', `#${placeholders(tag)}`))) : null,
        t.notes.length ? h('div.muted.small', `Starts with ${t.notes.length} note${t.notes.length > 1 ? 's' : ''}${t.annotations.length ? ` and ${t.annotations.length} comment${t.annotations.length > 1 ? 's' : ''}` : ''}`) : null),
      h('form.var-form', { novalidate: true, on: { submit: (/** @type {Event} */ e) => { e.preventDefault(); submit() } } },
        ...fields,
        t.title ? h('div.preview-row', h('span.muted.small', 'Title: '), preview) : null,
        h('details.title-override', h('summary.muted.small', 'Use another title'), override),
        h('div.dialog-actions',
          h('button.btn', { type: 'button', on: { click: () => dialog.close() } }, 'Cancel'),
          h('button.btn.primary', { type: 'submit', 'data-action': 'create-from-template' }, 'Create session'))))
    for (const input of inputs.values()) input.addEventListener('input', () => { error.textContent = '' })
    update()
    ;(fields.length ? /** @type {HTMLInputElement} */ (inputs.values().next().value) : null)?.focus()
  }

  document.body.appendChild(dialog)
  dialog.addEventListener('close', () => dialog.remove())
  dialog.showModal()
  show(start)
}
