// The session's assistants: list, add, remove (REST /sessions/{id}/assistants).

import { h, fill, icon, toast } from './dom.js'

const PROVIDERS = [
  ['scripted', 'Scripted (offline demo)'],
  ['openai', 'OpenAI'],
  ['openai_responses', 'OpenAI Responses'],
  ['anthropic', 'Anthropic'],
  ['openai_compatible', 'OpenAI-compatible (Ollama, vLLM…)']
]
const TRIGGERS = [['mention', 'When @mentioned'], ['message', 'Every message'], ['manual', 'Only when asked']]

/**
 * @param {import('../sdk/index.js').ParleyClient} client
 * @param {string} sessionId
 * @param {any[]} current
 * @param {(list: any[]) => void} changed
 */
export async function assistantsDialog (client, sessionId, current, changed) {
  let list = current
  const listEl = h('div.assistant-list')
  const render = () => {
    fill(listEl, ...(list.length
      ? list.map((a) => h('div.assistant-row', { 'data-assistant': a.name },
        h('span.avatar.bot', icon('sparkle', 16)),
        h('div.assistant-info', h('strong', a.name), h('span.muted.small', `${a.provider} · ${a.model} · ${TRIGGERS.find((t) => t[0] === a.trigger)?.[1] || a.trigger}`)),
        h('button.icon-btn.sm', { title: `Remove ${a.name}`, on: { click: async () => {
          try {
            await client.rest.removeAssistant(sessionId, a.name)
            list = list.filter((x) => x.name !== a.name)
            changed(list)
            render()
          } catch (err) { toast(/** @type {Error} */ (err).message, 'error') }
        } } }, icon('trash', 16))))
      : [h('p.muted.small', 'No assistants in this session yet.')]))
  }
  render()
  const name = /** @type {HTMLInputElement} */ (h('input.input', { name: 'name', placeholder: 'helper', required: true, pattern: '[A-Za-z][A-Za-z0-9_\\-]{0,31}', 'aria-label': 'Name' }))
  const provider = /** @type {HTMLSelectElement} */ (h('select.input', { name: 'provider', 'aria-label': 'Provider' }, ...PROVIDERS.map(([v, l]) => h('option', { value: v }, l))))
  const model = /** @type {HTMLInputElement} */ (h('input.input', { name: 'model', placeholder: 'scripted', 'aria-label': 'Model' }))
  const trigger = /** @type {HTMLSelectElement} */ (h('select.input', { name: 'trigger', 'aria-label': 'Trigger' }, ...TRIGGERS.map(([v, l]) => h('option', { value: v }, l))))
  const prompt = /** @type {HTMLTextAreaElement} */ (h('textarea.input', { name: 'system_prompt', rows: 2, placeholder: 'You are a helpful assistant.', 'aria-label': 'System prompt' }))
  const error = h('div.form-error')
  provider.addEventListener('change', () => { model.placeholder = provider.value === 'scripted' ? 'scripted' : provider.value.startsWith('anthropic') ? 'claude-sonnet-4-5' : 'gpt-4o-mini' })
  const dialog = /** @type {HTMLDialogElement} */ (h('dialog.dialog.wide',
    h('div.dialog-head', h('h3', 'Assistants'), h('button.icon-btn', { 'aria-label': 'Close', on: { click: () => dialog.close() } }, icon('close'))),
    h('p.muted.small', 'Assistants answer in the session for everyone, streaming as they write.'),
    listEl,
    h('form.assistant-form', { on: { submit: async (/** @type {Event} */ e) => {
      e.preventDefault()
      error.textContent = ''
      try {
        const a = await client.rest.addAssistant(sessionId, {
          name: name.value.trim(), provider: provider.value, model: model.value.trim() || model.placeholder,
          trigger: trigger.value, system_prompt: prompt.value
        })
        list = [...list, a]
        changed(list)
        render()
        name.value = ''
        prompt.value = ''
      } catch (err) { error.textContent = /** @type {Error} */ (err).message }
    } } },
    h('h4', 'Add an assistant'),
    h('div.form-grid',
      h('label', h('span.field-label', 'Name'), name),
      h('label', h('span.field-label', 'Answers'), trigger),
      h('label', h('span.field-label', 'Provider'), provider),
      h('label', h('span.field-label', 'Model'), model)),
    h('label', h('span.field-label', 'Instructions'), prompt),
    error,
    h('div.dialog-actions', h('button.btn.primary', { type: 'submit', 'data-action': 'add-assistant' }, icon('plus', 16), 'Add assistant')))
  ))
  document.body.appendChild(dialog)
  dialog.addEventListener('close', () => dialog.remove())
  dialog.showModal()
}
