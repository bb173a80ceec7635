// The workspace in a real Chromium (Debian's, through playwright-core; never a downloaded one):
// two browser contexts as two users on one real server. Screenshots of the main views go to
// test-artifacts/screenshots/ (gitignored).

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { startServer, ROOT } from './support/server.js'

const CHROMIUM = process.env.PARLEY_CHROMIUM || '/usr/bin/chromium'
const SHOTS = join(ROOT, 'test-artifacts', 'screenshots')
const WEB = join(ROOT, 'server', 'parley', 'web', 'static', 'index.html')

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server
/** @type {import('playwright-core').Browser} */
let browser
/** Script errors and requests to anywhere but the server: both must stay empty. */
const problems = []

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (never download a browser)`)
  if (!existsSync(WEB)) throw new Error('the workspace is not built: run make web')
  mkdirSync(SHOTS, { recursive: true })
  server = await startServer()
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
})

after(async () => {
  await browser?.close()
  await server?.stop()
})

/** A signed-in page for `user` (the sign-in link `make serve` prints), at `size`. */
async function signIn (user, name, size = { width: 1360, height: 860 }) {
  const context = await browser.newContext({ viewport: size, deviceScaleFactor: 1 })
  const page = await context.newPage()
  watch(page)
  await page.goto(`${server.url}/#token=${server.token(user, { name })}`)
  await page.locator('.session-list').waitFor()
  return page
}

/** Record script errors and any request that leaves the server (no CDN, no network). */
function watch (page) {
  page.on('pageerror', (err) => problems.push(`script error: ${err.message}`))
  page.on('console', (msg) => { if (msg.type() === 'error' && !/status of 40[14]/.test(msg.text())) problems.push(`console: ${msg.text()}`) })
  page.on('request', (req) => {
    const url = req.url()
    if (!url.startsWith(server.url) && !url.startsWith(server.url.replace('http', 'ws')) && !url.startsWith('data:')) problems.push(`request to ${url}`)
  })
}

/** @param {import('playwright-core').Page} page @param {string} name */
const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`) })

/** Select characters [start, end) of a message's text, as a user would with the mouse. */
async function selectText (page, messageId, start, end) {
  await page.evaluate(({ messageId, start, end }) => {
    const el = document.querySelector(`.msg-text[data-message="${messageId}"]`)
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT)
    const range = document.createRange()
    let pos = 0
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const len = n.textContent.length
      if (pos <= start && start <= pos + len) range.setStart(n, start - pos)
      if (pos <= end && end <= pos + len) { range.setEnd(n, end - pos); break }
      pos += len
    }
    const sel = document.getSelection()
    sel.removeAllRanges()
    sel.addRange(range)
  }, { messageId, start, end })
}

test('two people in one session: messages, presence, typing, streaming with stop, annotations, branches', async () => {
  const token = server.token('alice', { name: 'Alice Martin' })
  const api = (path, body, method = 'POST') => fetch(`${server.url}/api/v1${path}`, {
    method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body)
  }).then((r) => r.json())
  await api('/sessions', { title: 'Weekly research sync', tags: ['research'] })
  await api('/sessions', { title: 'Onboarding checklist', tags: ['ops', 'people'] })
  const session = await api('/sessions', { title: 'Launch plan', tags: ['planning', 'launch'] })
  // Slow enough to stop: 200 words at 40 ms.
  await api(`/sessions/${session.id}/assistants`, { name: 'helper', provider: 'scripted', model: 'scripted', params: { tokens: 200, token_delay: 0.04 } })

  const alice = await signIn('alice', 'Alice Martin')
  const bob = await signIn('bob', 'Bob Chen')
  try {
    await scenario(alice, bob, session, api)
    assert.deepEqual(problems, [])
  } catch (err) {
    await shot(alice, 'failure-alice').catch(() => null)
    await shot(bob, 'failure-bob').catch(() => null)
    throw err
  }
})

async function scenario (alice, bob, session, api) {
  await alice.locator(`.session-item[data-session="${session.id}"]`).waitFor()
  // Search and facets narrow the list.
  await alice.fill('.search-input', 'launch')
  await alice.locator('.session-item').first().waitFor()
  assert.equal(await alice.locator('.session-item').count(), 1)
  await alice.fill('.search-input', '')
  await alice.locator('.chip', { hasText: '#ops' }).click()
  assert.equal(await alice.locator('.session-item').count(), 1)
  await alice.locator('.chip', { hasText: '#ops' }).click()
  await shot(alice, 'session-list')

  await alice.click(`.session-item[data-session="${session.id}"]`)
  await bob.goto(`${server.url}/#/s/${session.id}`)
  await alice.locator('.empty-conv').waitFor()
  await bob.locator('.empty-conv').waitFor()

  // Each sees the other's presence.
  await alice.locator('.presence [data-user="bob"]').waitFor()
  await bob.locator('.presence [data-user="alice"]').waitFor()

  // Typing shows on the other side; the message appears there.
  await alice.locator('.composer-input').pressSequentially('Morning Bob! Shall we finalise the launch date today?', { delay: 5 })
  await bob.locator('.typing-line', { hasText: 'Alice Martin is typing' }).waitFor()
  await alice.locator('.composer-input').press('Enter')
  await bob.locator('.msg', { hasText: 'finalise the launch date' }).waitFor()
  await bob.locator('.typing-line:empty').waitFor()

  // An assistant answer streams to both; stop works.
  await bob.locator('.composer-input').fill('Yes. @helper can you draft a timeline for the launch?')
  await bob.locator('.send-btn').click()
  await alice.locator('.msg', { hasText: 'draft a timeline' }).waitFor()
  const aliceStream = alice.locator('.streaming .stream-text')
  const bobStream = bob.locator('.streaming .stream-text')
  await alice.waitForFunction(() => (document.querySelector('.streaming .stream-text')?.textContent || '').length > 60)
  await bob.waitForFunction(() => (document.querySelector('.streaming .stream-text')?.textContent || '').length > 60)
  assert.match(await aliceStream.textContent(), /^\[scripted\] streams tokens/)
  assert.match(await bobStream.textContent(), /^\[scripted\] streams tokens/)
  await shot(alice, 'conversation-streaming')
  await alice.click('[data-action="stop"]')
  await alice.locator('.streaming').waitFor({ state: 'detached' })
  await bob.locator('.streaming').waitFor({ state: 'detached' })
  const answer = bob.locator('.msg.assistant', { hasText: 'streams tokens' })
  await answer.locator('.msg-foot', { hasText: 'stopped' }).waitFor()
  await alice.locator('.msg.assistant .msg-foot', { hasText: 'stopped' }).waitFor()
  const stored = (await api(`/sessions/${session.id}/messages?limit=100`, undefined, 'GET')).items
  const final = stored.find((m) => m.author.startsWith('assistant.'))
  assert.equal(final.metadata.finish_reason, 'cancelled')
  assert.ok(final.text.split(' ').length < 150, 'the answer was cut short')
  assert.equal((await answer.locator('.msg-text').textContent()), final.text)

  // An annotation made by Alice appears for Bob.
  const bobMessage = stored.find((m) => m.author === 'bob')
  await selectText(alice, bobMessage.id, 5, 12)
  await alice.locator('.selection-bar.show').waitFor()
  await alice.click('.selection-bar [data-action="comment"]')
  await alice.locator('.panel .thread.draft textarea').fill('Can we name the assistant in the brief too?')
  await alice.click('[data-action="post-comment"]')
  const mark = bob.locator(`.msg-text[data-message="${bobMessage.id}"] mark.ann`)
  await mark.waitFor()
  assert.equal(await mark.textContent(), '@helper')
  await mark.click()
  await bob.locator('.panel .thread', { hasText: 'name the assistant in the brief' }).waitFor()
  await bob.locator('.panel .reply-input').fill('Good idea, will do.')
  await bob.locator('.panel .reply-input').press('Enter')
  await alice.locator('.panel .comment.reply', { hasText: 'Good idea' }).waitFor()
  await shot(bob, 'annotations')
  await alice.click('.panel [data-action="resolve"]')
  await bob.locator('.panel .thread', { hasText: 'name the assistant' }).waitFor({ state: 'detached' })
  await bob.locator(`.msg-text[data-message="${bobMessage.id}"] mark.ann`).waitFor({ state: 'detached' })

  // Editing makes a branch; regenerating an answer makes another; the tree shows both.
  const aliceMessage = stored.find((m) => m.author === 'alice')
  await alice.hover(`.msg[data-id="${aliceMessage.id}"]`)
  await alice.click(`.msg[data-id="${aliceMessage.id}"] [data-action="edit"]`)
  await alice.locator('.edit-input').fill('Morning Bob! Can we move the launch to Thursday?')
  await alice.click('[data-action="save-edit"]')
  await alice.locator('.msg', { hasText: 'move the launch to Thursday' }).waitFor()
  await alice.locator('.branch-switch', { hasText: '2 / 2' }).waitFor()
  assert.equal(await alice.locator('.msg', { hasText: 'draft a timeline' }).count(), 0)
  await alice.click('.branch-switch [aria-label="Previous branch"]')
  await alice.locator('.msg', { hasText: 'draft a timeline' }).waitFor()
  await alice.hover('.msg.assistant')
  await alice.click('.msg.assistant [data-action="regenerate"]')
  await alice.locator('.streaming').waitFor()
  await alice.click('[data-action="stop"]')
  await alice.locator('.msg.assistant .branch-switch', { hasText: '2 / 2' }).waitFor()
  await alice.click('.tab[data-tab="tree"]')
  await alice.locator('.tree-node.leaf').waitFor()
  assert.equal(await alice.locator('.tree-node').count(), 5)
  await shot(alice, 'tree')
  await alice.click('.tab[data-tab="timeline"]')
  await alice.locator('.tl-item.annotation-resolved').waitFor()
  await shot(alice, 'timeline')
  await alice.click('.tab[data-tab="chat"]')

  // Assistants are added from the UI.
  await alice.click('[data-action="assistants"]')
  await alice.fill('.assistant-form input[name="name"]', 'scribe')
  await alice.selectOption('.assistant-form select[name="trigger"]', 'manual')
  await alice.fill('.assistant-form textarea[name="system_prompt"]', 'Keep minutes of the discussion.')
  await shot(alice, 'assistants')
  await alice.click('[data-action="add-assistant"]')
  await alice.locator('.assistant-row[data-assistant="scribe"]').waitFor()
  await alice.keyboard.press('Escape')
  await alice.locator('.ask-chip[data-assistant="scribe"]').waitFor()
  await alice.locator('.composer-input').fill('Summarise where we are, please.')
  await alice.click('.ask-chip[data-assistant="scribe"]')
  await alice.locator('.msg.assistant', { hasText: 'Summarise where we are' }).waitFor()
  await shot(alice, 'conversation')
  // Bob reads his branch; the new one is in his tree.
  await bob.click('.tab[data-tab="tree"]')
  await bob.locator('.tree-node', { hasText: 'Summarise where we are' }).first().waitFor()

  // Renaming the session shows for the other at once.
  await alice.click('[data-action="settings"]')
  await alice.fill('dialog input[name="title"]', 'Launch plan (Q3)')
  await alice.click('[data-action="save-session"]')
  await bob.locator('.conv-title', { hasText: 'Launch plan (Q3)' }).waitFor()
  await bob.locator('.session-item', { hasText: 'Launch plan (Q3)' }).waitFor()

  // Phone width: the list, then the conversation, one at a time. Carol arrives while an
  // answer streams: she gets the text so far, then the rest live, and may stop it.
  await alice.locator('.composer-input').fill('And the risks?')
  await alice.click('.ask-chip[data-assistant="helper"]')
  await alice.locator('.streaming').waitFor()
  const phone = await signIn('carol', 'Carol Diaz', { width: 390, height: 844 })
  await shot(phone, 'phone-list')
  await phone.click(`.session-item[data-session="${session.id}"]`)
  await phone.locator('.msg.assistant').first().waitFor()
  assert.equal(await phone.locator('.sidebar').isVisible(), false)
  await phone.waitForFunction(() => (document.querySelector('.streaming .stream-text')?.textContent || '').startsWith('[scripted] streams tokens'))
  await shot(phone, 'phone-streaming')
  await phone.click('[data-action="stop"]')
  await alice.locator('.streaming').waitFor({ state: 'detached' })
  await phone.locator('.streaming').waitFor({ state: 'detached' })
  await phone.locator('.presence [data-user="alice"]').waitFor({ state: 'attached' })
  await shot(phone, 'phone-conversation')
  await phone.click('[data-action="annotations"]')
  await phone.locator('.panel').waitFor()
  await phone.click('.segmented button:nth-child(2)')
  await phone.locator('.panel .thread.resolved').waitFor()
  await shot(phone, 'phone-annotations')
}

test('sign-in: a refused token says so; a good one opens the workspace', async () => {
  problems.length = 0
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } })
  const page = await context.newPage()
  watch(page)
  await page.goto(server.url)
  await page.locator('.signin-card').waitFor()
  await page.fill('#token', 'not-a-token')
  await page.click('.signin-card .btn.primary')
  await page.locator('.signin-card .alert', { hasText: 'refused' }).waitFor()
  await shot(page, 'sign-in')
  await page.fill('#token', server.token('dana', { name: 'Dana Scott' }))
  await page.click('.signin-card .btn.primary')
  await page.locator('.me', { hasText: 'Dana Scott' }).waitFor()
  await context.close()
  assert.deepEqual(problems, [])
})
