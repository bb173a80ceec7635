// The workspace's intelligence pages in a real Chromium against a real server: the analytics
// dashboard over real data (LLM answers from a fake OpenAI-compatible provider, priced by a
// price table, sentiment from the background analysis), search with facets, highlights, paging
// and natural-language chips, and sessions made from templates. Screenshots go to
// test-artifacts/screenshots/.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { RestClient } from '../src/sdk/index.js'
import { money, num } from '../src/app/format.js'
import { startServer, ROOT } from './support/server.js'
import { startFakeLlm } from './support/fake-llm.js'

const CHROMIUM = process.env.PARLEY_CHROMIUM || '/usr/bin/chromium'
const SHOTS = join(ROOT, 'test-artifacts', 'screenshots')
const WEB = join(ROOT, 'server', 'parley', 'web', 'static', 'index.html')
const DAY = 86400000

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server
/** @type {Awaited<ReturnType<typeof startFakeLlm>>} */
let llm
/** @type {import('playwright-core').Browser} */
let browser
let work = ''
/** Script errors and requests to anywhere but the server: both must stay empty. */
const problems = []
/** @type {Record<string, any>} what the seed made */
const seed = {}

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (never download a browser)`)
  if (!existsSync(WEB)) throw new Error('the workspace is not built: run make web')
  mkdirSync(SHOTS, { recursive: true })
  work = mkdtempSync(join(tmpdir(), 'parley-intel-'))
  const prices = join(work, 'prices.json')
  writeFileSync(prices, JSON.stringify({ currency: 'USD', models: { 'acme-large': { input: 3.0, output: 15.0 }, 'acme-small': { input: 0.15, output: 0.6 } } }))
  llm = await startFakeLlm()
  server = await startServer({
    env: {
      PARLEY_RELAY_COMPATIBLE_BASE_URL: llm.baseUrl,
      PARLEY_RELAY_PRICE_FILE: prices,
      PARLEY_ANALYSIS_DEBOUNCE: '0',
      PARLEY_ANALYSIS_POLL_INTERVAL: '0.1'
    }
  })
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  await seedData()
})

after(async () => {
  await browser?.close()
  await server?.stop()
  await llm?.close()
  if (work) rmSync(work, { recursive: true, force: true })
})

/** @param {string} user @param {string} name @param {object} [o] */
const rest = (user, name, o = {}) => new RestClient({ baseUrl: server.url, token: server.token(user, { name, ...o }) })

/** Wait until `check()` resolves truthy. */
async function until (check, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await check()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Ask an assistant (the text is posted as the caller's message) and wait for its answer. */
async function askAndWait (api, sid, name, text) {
  await api.ask(sid, name, { text })
  await until(async () => (await api.allMessages(sid)).some((m) => m.author.startsWith('assistant.') && m.metadata?.finish_reason && m.parent_id && m.metadata.model && m.text.includes(text.slice(0, 20))), `${name} to answer`)
}

/** Two people, two sessions with LLM assistants on two priced models, a log of refunds, an
 * HTML-looking message; then wait until the analysis has read every message. */
async function seedData () {
  const alice = rest('alice', 'Alice Martin')
  const bob = rest('bob', 'Bob Chen')
  seed.alice = alice
  const pricing = await alice.createSession({ title: 'Pricing review', tags: ['pricing', 'planning'] })
  await alice.addAssistant(pricing.id, { name: 'analyst', provider: 'openai_compatible', model: 'acme-large' })
  await alice.postMessage(pricing.id, { text: 'Great news: the new plan doubled sign-ups. I love how simple the pricing page is now!' })
  await bob.postMessage(pricing.id, { text: 'That is wonderful. Should we raise the AI add-on price next quarter?' })
  await alice.postMessage(pricing.id, { text: 'I am worried churn will get worse and support is already overloaded and angry.' })
  await askAndWait(alice, pricing.id, 'analyst', 'What does the data say about the AI add-on price?')
  await bob.postMessage(pricing.id, { text: 'Thanks, this helps a lot. Decision: keep the price and revisit in March.' })

  const support = await bob.createSession({ title: 'Support backlog', tags: ['support'] })
  await bob.addAssistant(support.id, { name: 'triage', provider: 'openai_compatible', model: 'acme-small' })
  await bob.postMessage(support.id, { text: 'The refund queue is long today, customers wait too long.' })
  await askAndWait(bob, support.id, 'triage', 'Which refund tickets are the oldest?')
  await alice.postMessage(support.id, { text: 'I can take the refund tickets from last month.' })
  await bob.postMessage(support.id, { text: '<img src=x onerror="window.__pwned=1"> refund note with markup' })

  // More than one page of hits for "refund".
  const log = await alice.createSession({ title: 'Refund log', tags: ['support', 'finance'] })
  for (let i = 1; i <= 22; i++) await alice.postMessage(log.id, { text: `Refund ${i} approved for invoice INV-${1000 + i}.` })
  Object.assign(seed, { pricing, support, log })
  await until(async () => {
    const r = await alice.analytics({})
    return r.sentiment.analysed_messages === r.messages && r.llm.generations === 2
  }, 'the analysis of every message')
}

/** A signed-in page for `user` at `size`, on `hash`. */
async function open (user, name, hash, size = { width: 1360, height: 900 }) {
  const context = await browser.newContext({ viewport: size, deviceScaleFactor: 1, reducedMotion: 'reduce', acceptDownloads: true })
  const page = await context.newPage()
  page.on('pageerror', (err) => problems.push(`script error: ${err.message}`))
  page.on('console', (msg) => { if (msg.type() === 'error' && !/status of 40[14]/.test(msg.text())) problems.push(`console: ${msg.text()}`) })
  page.on('request', (req) => {
    const url = req.url()
    if (!url.startsWith(server.url) && !url.startsWith(server.url.replace('http', 'ws')) && !url.startsWith('data:') && !url.startsWith('blob:')) problems.push(`request to ${url}`)
  })
  await page.goto(`${server.url}/#token=${server.token(user, { name })}`)
  await page.locator('.session-list').waitFor()
  if (hash) await page.evaluate((h) => { location.hash = h }, hash)
  return page
}

/** @param {import('playwright-core').Page} page @param {string} name */
const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`) })

/** Elements that stick out of their dashboard card (a table too wide, a label cut off). */
const outOfCards = (page) => page.evaluate(() => [...document.querySelectorAll('.dashboard .card')].flatMap((card) => {
  const edge = card.getBoundingClientRect().right
  return [...card.querySelectorAll('*')].filter((el) => el.getBoundingClientRect().right > edge + 1).map((el) => `${card.querySelector('h2')?.textContent}: ${el.tagName} ${el.textContent?.slice(0, 30)}`)
}).slice(0, 5))

/** How many pixels of a canvas are painted (a chart that drew nothing has none). */
const painted = (page, selector) => page.$eval(selector, (c) => {
  const canvas = /** @type {HTMLCanvasElement} */ (c)
  const data = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d')).getImageData(0, 0, canvas.width, canvas.height).data
  let n = 0
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++
  return n
})

const metric = (page, key) => page.locator(`tr[data-metric="${key}"] td`).textContent()

/** Run a page scenario; on failure keep a screenshot of where it stopped. */
async function scenario (page, name, fn) {
  try {
    await fn()
  } catch (err) {
    await shot(page, `failure-${name}`).catch(() => null)
    throw err
  }
}

test('the analytics dashboard draws the real numbers of the analytics API', async () => {
  problems.length = 0
  const alice = seed.alice
  const page = await open('alice', 'Alice Martin', '#/dashboard')
  await scenario(page, 'dashboard', async () => {
    await page.locator('canvas[data-chart="activity"]').waitFor()
    // The default period is the last 30 days (from the start of that UTC day).
    const from = `${new Date(Date.now() - 29 * DAY).toISOString().slice(0, 10)}T00:00:00Z`
    const report = await alice.analytics({ from, by: ['model', 'assistant'] })
    assert.equal(report.messages, 33)
    assert.equal(report.llm.generations, 2)
    assert.ok(report.llm.cost.total > 0, 'the price table priced the answers')
    assert.equal(await metric(page, 'messages'), num(report.messages))
    assert.equal(await metric(page, 'active_users'), num(report.active_users))
    assert.equal(await metric(page, 'sessions'), num(report.sessions))
    assert.equal(await metric(page, 'llm.generations'), '2')
    assert.equal(await metric(page, 'llm.output_tokens'), num(report.llm.output_tokens))
    assert.equal(await metric(page, 'llm.cost.total'), money(report.llm.cost))
    assert.match(money(report.llm.cost), /^\$0\.0\d*[1-9]/)
    assert.equal(await metric(page, 'quality.score'), report.quality.score.toFixed(1))
    assert.equal(await page.locator('.kpi[data-kpi="messages"] .kpi-value').textContent(), num(report.messages))
    assert.match(await page.locator('.kpi[data-kpi="first_token"] .kpi-value').textContent(), /^\d+ ms$|^\d+\.\d\d s$/)

    // The charts drew the series and the breakdowns.
    const today = new Date().toISOString().slice(0, 10)
    const todays = report.series.find((d) => d.day === today)
    assert.match(await page.getAttribute('canvas[data-chart="activity"]', 'aria-label'), new RegExp(`${today} ${todays.messages}`))
    assert.match(await page.getAttribute('canvas[data-chart="tokens"]', 'aria-label'), new RegExp(`${today} ${todays.llm_tokens}`))
    for (const name of ['activity', 'tokens', 'quality', 'by-model', 'by-assistant', 'intents']) {
      assert.ok(await painted(page, `canvas[data-chart="${name}"]`) > 500, `chart ${name} is drawn`)
    }
    for (const g of report.breakdowns.model) {
      const row = page.locator(`table[data-breakdown="model"] tr[data-key="${g.key}"]`)
      assert.equal(await row.locator('td').nth(2).textContent(), num(g.input_tokens + g.output_tokens))
    }
    assert.deepEqual((await page.locator('table[data-breakdown="model"] tbody td:first-child').allTextContents()).sort(), ['acme-large', 'acme-small'])
    assert.deepEqual((await page.locator('table[data-breakdown="assistant"] tbody td:first-child').allTextContents()).sort(), ['analyst', 'triage'])

    // The quality score explains itself.
    await page.locator('.kpi [data-action="quality-help"]').click()
    await page.locator('.kpi .help-wrap.open .help-pop', { hasText: '0.35 × tone' }).waitFor()
    await page.locator('.kpi [data-action="quality-help"]').click()

    // The sentiment trend of the most active session (the refund log), then of another.
    await page.locator('canvas[data-chart="sentiment"]').waitFor()
    await page.selectOption('select[name="sentiment-session"]', seed.pricing.id)
    await page.waitForFunction(() => /Sentiment of 6 messages/.test(document.querySelector('canvas[data-chart="sentiment"]')?.getAttribute('aria-label') || ''))
    assert.ok(await painted(page, 'canvas[data-chart="sentiment"]') > 500)
    assert.deepEqual(await outOfCards(page), [])
    // The whole dashboard in one picture: a window as tall as its content.
    const tall = await page.$eval('.dashboard', (el) => el.scrollHeight)
    await page.setViewportSize({ width: 1360, height: tall })
    await page.waitForFunction(() => !document.querySelector('.dashboard.busy'))
    await shot(page, 'dashboard')
    await page.setViewportSize({ width: 1360, height: 900 })

    // The CSV download holds the same numbers.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-action="csv"]')])
    const rows = Object.fromEntries(readFileSync(await download.path(), 'utf8').trim().split('\n').map((l) => l.split(',')))
    assert.equal(rows.messages, String(report.messages))
    assert.equal(rows['breakdowns.model.acme-large.generations'], '1')

    // One session's numbers; then all time.
    await page.selectOption('select[name="scope"]', `session:${seed.pricing.id}`)
    const one = await alice.analytics({ scope: 'session', id: seed.pricing.id, from })
    await page.waitForFunction((n) => document.querySelector('tr[data-metric="messages"] td')?.textContent === n, num(one.messages))
    assert.equal(await metric(page, 'llm.generations'), '1')
    assert.equal(await page.locator('select[name="sentiment-session"]').count(), 0, 'a session scope shows its own trend')
    assert.match(page.url(), new RegExp(`scope=session&id=${seed.pricing.id}`))
    await page.click('[data-period="all"]')
    await page.waitForFunction(() => document.querySelector('[data-period="all"]')?.getAttribute('aria-pressed') === 'true' && !document.querySelector('.dashboard.busy'))
    assert.equal(await metric(page, 'messages'), num(one.messages))
  })
  await page.context().close()
  assert.deepEqual(problems, [])
})

test('the dashboard fits a phone', async () => {
  problems.length = 0
  const page = await open('bob', 'Bob Chen', '#/dashboard?period=7', { width: 390, height: 844 })
  await scenario(page, 'phone-dashboard', async () => {
    await page.locator('canvas[data-chart="activity"]').waitFor()
    assert.equal(await page.locator('.sidebar').isVisible(), false)
    assert.equal(await page.getAttribute('[data-period="7"]', 'aria-pressed'), 'true')
    const overflow = await page.evaluate(() => [...document.querySelectorAll('.dashboard *')].filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1).map((el) => el.className).slice(0, 5))
    assert.deepEqual(overflow, [], 'nothing sticks out on the right')
    assert.deepEqual(await outOfCards(page), [])
    const columns = await page.$eval('.kpis', (el) => getComputedStyle(el).gridTemplateColumns.split(' ').length)
    assert.equal(columns, 2)
    assert.ok(await painted(page, 'canvas[data-chart="activity"]') > 500)
    await shot(page, 'phone-dashboard')
    await page.setViewportSize({ width: 390, height: await page.$eval('.dashboard', (el) => el.scrollHeight) })
    await page.waitForFunction(() => !document.querySelector('.dashboard.busy'))
    await shot(page, 'phone-dashboard-full')
    await page.setViewportSize({ width: 390, height: 844 })
    await page.click('.dash-head .back')
    await page.locator('.session-list').waitFor()
  })
  await page.context().close()
  assert.deepEqual(problems, [])
})

test('search: ranked hits with marked matches, facets, more, and a hit opens its message', async () => {
  problems.length = 0
  const page = await open('alice', 'Alice Martin', '')
  await scenario(page, 'search', async () => {
    // Typing narrows the list; Enter searches everything.
    await page.fill('.search-input', 'refund')
    await page.locator('.search-input').press('Enter')
    await page.locator('.search-view .hit').first().waitFor()
    assert.match(page.url(), /#\/search\?q=refund$/)
    assert.equal(await page.locator('.qchip[data-field="q"] .qchip-value').textContent(), 'refund')
    assert.equal(await page.locator('.hit').count(), 20)
    const total = await seed.alice.search({ q: 'refund' })
    assert.equal(await page.locator('.result-status').textContent(), `${total.facets.total} matches · showing 20`)
    const marks = await page.locator('.hit-snippet mark').allTextContents()
    assert.ok(marks.length >= 20 && marks.every((m) => m.toLowerCase() === 'refund'), marks.join())

    await page.click('[data-action="more"]')
    await page.waitForFunction((n) => document.querySelectorAll('.hit').length === n, total.facets.total)
    assert.equal(await page.locator('[data-action="more"]').isVisible(), false)
    // A message that looks like markup stays text.
    await page.locator('.hit-snippet', { hasText: '<img src=x' }).waitFor()
    assert.equal(await page.locator('.hits img').count(), 0)
    assert.equal(await page.evaluate(() => /** @type {any} */ (window).__pwned), undefined)

    // A facet narrows the hits and shows as a chip.
    await page.click('[data-facet="tag"] [data-value="finance"]')
    await page.locator('.qchip[data-field="tag"]').waitFor()
    await page.waitForFunction(() => [...document.querySelectorAll('.hit')].every((h) => h.querySelector('.hit-session')?.textContent === 'Refund log'))
    assert.equal(await page.getAttribute('[data-facet="tag"] [data-value="finance"]', 'aria-pressed'), 'true')
    await page.click('[data-facet="participant"] [data-value="alice"]')
    await page.locator('[data-facet="participant"] [data-value="alice"][aria-pressed="true"]').waitFor()
    await page.locator('.qchip[data-field="participant"]').waitFor()
    assert.equal(await page.locator('[data-facet="participant"] [data-value^="assistant."]').count(), 0)
    await shot(page, 'search')
    await page.click('.qchip[data-field="participant"] .qchip-remove')
    await page.locator('.qchip[data-field="participant"]').waitFor({ state: 'detached' })

    // A hit opens its session at that message.
    const hit = page.locator('.hit[data-kind="message"]', { hasText: 'INV-1007' })
    const ref = await hit.getAttribute('data-ref')
    await hit.click()
    await page.locator(`.msg.target[data-id="${ref}"]`).waitFor()
    assert.match(page.url(), new RegExp(`#/s/${seed.log.id}/m/${ref}$`))
    await page.waitForFunction((id) => {
      const r = document.querySelector(`.msg[data-id="${id}"]`)?.getBoundingClientRect()
      return !!r && r.top >= 0 && r.bottom <= window.innerHeight
    }, ref)
    assert.match(await page.locator(`.msg.target[data-id="${ref}"] .msg-text`).textContent(), /Refund 7 approved/)
    await shot(page, 'search-hit-opened')
  })
  await page.context().close()
  assert.deepEqual(problems, [])
})

test('a sentence becomes editable chips: "my conversations about AI from last week"', async () => {
  problems.length = 0
  const page = await open('bob', 'Bob Chen', '#/search')
  await scenario(page, 'search-nl', async () => {
    await page.locator('.search-big').fill('my conversations about AI from last week')
    await page.locator('.search-big').press('Enter')
    await page.locator('.qchip[data-field="from"]').waitFor()
    const parsed = (await rest('bob', 'Bob Chen').parseSearch('my conversations about AI from last week')).query
    assert.equal(await page.locator('.qchip[data-field="q"] .qchip-value').textContent(), parsed.q)
    assert.equal(await page.locator('.qchip[data-field="participant"] .qchip-value').textContent(), 'bob')
    assert.equal(await page.locator('.qchip[data-field="to"]').count(), parsed.to ? 1 : 0)
    await page.locator('.parse-notes', { hasText: 'last week' }).waitFor()
    // Everything was written today: nothing from last week.
    await page.locator('.no-hits').waitFor()
    await shot(page, 'search-nl')
    // Remove the dates: Bob's message about the AI add-on is found.
    await page.click('.qchip[data-field="from"] .qchip-remove')
    if (parsed.to) await page.click('.qchip[data-field="to"] .qchip-remove')
    await page.locator('.hit', { hasText: 'AI add-on' }).first().waitFor()
    assert.equal(await page.locator('.qchip[data-field="from"]').count(), 0)
    // Edit the topic chip.
    await page.click('.qchip[data-field="q"] .qchip-value')
    await page.locator('.qchip-input').fill('refund')
    await page.locator('.qchip-input').press('Enter')
    await page.locator('.qchip[data-field="q"] .qchip-value', { hasText: 'refund' }).waitFor()
    await page.locator('.hit', { hasText: 'refund queue' }).waitFor()
    assert.equal(await page.locator('.hit', { hasText: 'AI add-on' }).count(), 0)
    // A date chip edits with a date field.
    await page.fill('[data-facet="date"] input[name="from"]', '2020-01-01')
    await page.locator('.qchip[data-field="from"]', { hasText: '2020' }).waitFor()
    await page.locator('.hit', { hasText: 'refund queue' }).waitFor()
    // On a phone the facets go above the hits and nothing sticks out.
    await page.setViewportSize({ width: 390, height: 844 })
    await page.waitForFunction(() => !document.querySelector('.search-view.busy'))
    assert.equal(await page.locator('.facet-panel').isVisible(), false, 'the hits come first')
    await page.click('.facet-toggle')
    await page.locator('[data-facet="participant"]').waitFor()
    const overflow = await page.evaluate(() => [...document.querySelectorAll('.search-view *')].filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1).map((el) => el.className).slice(0, 5))
    assert.deepEqual(overflow, [])
    await shot(page, 'phone-search')
  })
  await page.context().close()
  assert.deepEqual(problems, [])
})

test('a session from a template: variables, title preview, assistants, tags, notes and comments', async () => {
  problems.length = 0
  // A workspace template made by an admin shows beside the built-in ones.
  const admin = rest('ann', 'Ann Admin', { role: 'admin' })
  await admin.request('POST', '/templates', {
    body: { name: 'launch-review', description: 'Review a launch with a checklist.', title: 'Launch review: ${product}', variables: { product: { description: 'Product name' } }, tags: ['launch'], notes: [{ text: 'Checklist: docs, pricing, support.' }] }
  })
  const page = await open('carol', 'Carol Diaz', '')
  await scenario(page, 'template', async () => {
    await page.click('[data-action="from-template"]')
    await page.locator('.template-card[data-template="retrospective"]').waitFor()
    await page.locator('.template-card[data-template="launch-review"] .badge', { hasText: 'workspace' }).waitFor()
    const retro = page.locator('.template-card[data-template="retrospective"]')
    await retro.locator('.assistant-pill', { hasText: 'facilitator' }).waitFor()
    await retro.locator('.tag', { hasText: '#retrospective' }).waitFor()
    await shot(page, 'template-picker')
    await retro.click()
    // Required variables are asked for; defaults are filled in.
    assert.equal(await page.inputValue('input[name="var-team"]'), 'the team')
    await page.click('[data-action="create-from-template"]')
    await page.locator('.form-error', { hasText: 'period is required' }).waitFor()
    await page.fill('input[name="var-period"]', 'Sprint 42')
    await page.fill('input[name="var-team"]', 'Platform')
    assert.equal(await page.locator('.title-preview').textContent(), 'Retrospective: Sprint 42')
    await shot(page, 'template-variables')
    await page.click('[data-action="create-from-template"]')

    await page.locator('.conv-title', { hasText: 'Retrospective: Sprint 42' }).waitFor()
    const sid = page.url().match(/#\/s\/([\w-]+)/)[1]
    await page.locator('.conv-tags .tag', { hasText: '#retrospective' }).waitFor()
    await page.locator('.ask-chip[data-assistant="facilitator"]').waitFor()
    await page.locator('.msg', { hasText: 'Retrospective for Platform, Sprint 42' }).waitFor()
    await page.locator('.msg', { hasText: 'What went well?' }).waitFor()
    await page.locator('.msg', { hasText: 'Actions (owner, due date):' }).locator('.thread-chip').waitFor()
    await page.locator(`.session-item[data-session="${sid}"]`).waitFor()
    await page.click('[data-action="annotations"]')
    await page.locator('.panel .thread', { hasText: 'Every action needs one owner.' }).waitFor()
    await shot(page, 'template-session')

    const carol = rest('carol', 'Carol Diaz')
    const assistants = (await carol.listAssistants(sid)).items
    assert.deepEqual(assistants.map((a) => a.name), ['facilitator'])
    assert.match(assistants[0].system_prompt, /for Platform about Sprint 42/)
    assert.deepEqual((await carol.getSession(sid)).tags, ['retrospective'])

    // The workspace's own template, with a title of the user's choosing.
    await page.click('[data-action="from-template"]')
    await page.click('.template-card[data-template="launch-review"]')
    await page.fill('input[name="var-product"]', 'Parley 2')
    await page.click('.title-override summary')
    await page.fill('.title-override input', 'Parley 2 go/no-go')
    await page.click('[data-action="create-from-template"]')
    await page.locator('.conv-title', { hasText: 'Parley 2 go/no-go' }).waitFor()
    await page.locator('.msg', { hasText: 'Checklist: docs, pricing, support.' }).waitFor()

    // The template's comment is found by search and opens its thread.
    await page.fill('.search-input', 'owner')
    await page.locator('.search-input').press('Enter')
    const hit = page.locator('.hit[data-kind="annotation"]', { hasText: 'Every action needs one' })
    assert.equal(await hit.locator('mark').textContent(), 'owner')
    await hit.click()
    await page.locator('.panel .thread.focus', { hasText: 'Every action needs one owner.' }).waitFor()
    assert.match(page.url(), new RegExp(`#/s/${sid}/a/`))
  })
  await page.context().close()
  assert.deepEqual(problems, [])
})
