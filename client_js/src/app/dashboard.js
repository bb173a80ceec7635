// The analytics dashboard: the numbers of GET /api/v1/analytics (docs/intelligence.md#analytics)
// for the workspace or one session, person, assistant or model over a period, as charts, a
// summary table and a CSV download; and the sentiment trend of one session from its insights.

import { h, fill, icon, toast } from './dom.js'
import { chartBox, COLORS, PALETTE, fade } from './charts.js'
import { num, millis, millisPair, seconds, money, dayRange, DAY } from './format.js'

const PERIODS = [['7', '7 days'], ['30', '30 days'], ['90', '90 days'], ['all', 'All time']]
const BY_ALL = ['model', 'assistant', 'user', 'session']

export const QUALITY_FORMULA = [
  'quality = 100 × (0.35 × tone + 0.25 × answered + 0.20 × assistant_ok + 0.20 × engagement)',
  'tone = (mean sentiment + 1) / 2',
  'answered = min(1, answers / questions)   (1 when nobody asked)',
  'assistant_ok = answers that finished normally / LLM answers   (1 when none)',
  'engagement = sessions where ≥ 2 people wrote / sessions'
].join('\n')

const PARTS = /** @type {const} */ ([['tone', 'Tone', 0.35], ['answered', 'Questions answered', 0.25], ['assistant_ok', 'Assistant answers OK', 0.2], ['engagement', 'Engagement', 0.2]])

export class Dashboard {
  /**
   * @param {import('../sdk/index.js').ParleyClient} client
   * @param {URLSearchParams} params period, scope, id
   */
  constructor (client, params) {
    this.client = client
    this.period = PERIODS.some(([p]) => p === params.get('period')) ? /** @type {string} */ (params.get('period')) : '30'
    this.scope = params.get('scope') || 'tenant'
    this.id = params.get('id') || ''
    /** @type {import('chart.js').Chart[]} */
    this.charts = []
    /** @type {string|null} the session whose sentiment is drawn */
    this.sentimentSession = null
    this.loading = 0
    this.scopeSelect = /** @type {HTMLSelectElement} */ (h('select.select', { 'aria-label': 'Scope', name: 'scope', on: { change: () => this.pickScope() } }))
    this.periodRow = h('div.segmented.period', { role: 'group', 'aria-label': 'Period' })
    this.body = h('div.dash-body', h('div.loading', h('span.spinner'), 'Loading analytics…'))
    this.el = h('section.dashboard',
      h('header.dash-head',
        h('button.icon-btn.back', { 'aria-label': 'Back to sessions', on: { click: () => { location.hash = '' } } }, icon('back')),
        h('div.dash-title', h('h1', 'Analytics'), h('p.muted.small', 'Activity, assistants and conversation quality, from the analytics API.')),
        h('div.dash-controls',
          this.scopeSelect,
          this.periodRow,
          h('button.btn.sm', { 'data-action': 'csv', title: 'Download these numbers as CSV', on: { click: () => this.downloadCsv() } }, icon('download', 15), 'CSV'))),
      this.body)
    this.renderPeriods()
  }

  /** The query for the analytics endpoint (without `by`). */
  query () {
    /** @type {Record<string, string>} */
    const q = {}
    if (this.period !== 'all') {
      const start = new Date(Date.now() - (Number(this.period) - 1) * DAY)
      q.from = `${start.toISOString().slice(0, 10)}T00:00:00Z`
    }
    if (this.scope !== 'tenant') { q.scope = this.scope; q.id = this.id }
    return q
  }

  renderPeriods () {
    fill(this.periodRow, ...PERIODS.map(([p, label]) => h(`button${p === this.period ? '.active' : ''}`, {
      'data-period': p, 'aria-pressed': String(p === this.period), on: { click: () => { this.period = p; this.renderPeriods(); this.load() } }
    }, label)))
  }

  remember () {
    const params = new URLSearchParams({ period: this.period })
    if (this.scope !== 'tenant') { params.set('scope', this.scope); params.set('id', this.id) }
    history.replaceState(null, '', `#/dashboard?${params}`)
  }

  pickScope () {
    const [scope, ...rest] = this.scopeSelect.value.split(':')
    this.scope = scope
    this.id = rest.join(':')
    if (scope === 'session') this.sentimentSession = this.id
    this.load()
  }

  async load () {
    const ticket = ++this.loading
    this.remember()
    this.el.classList.add('busy')
    try {
      const rest = this.client.rest
      const q = this.query()
      // The workspace's breakdowns name the people, sessions, assistants and models to pick from.
      const tenantQ = { ...q, scope: undefined, id: undefined }
      const [report, tenant] = this.scope === 'tenant'
        ? await rest.analytics({ ...q, by: BY_ALL }).then((r) => [r, r])
        : await Promise.all([rest.analytics({ ...q, by: ['model', 'assistant'] }), rest.analytics({ ...tenantQ, by: BY_ALL })])
      if (ticket !== this.loading) return
      this.report = report
      this.renderScopes(tenant)
      const sessions = tenant.breakdowns?.session || []
      if (this.scope === 'session') this.sentimentSession = this.id
      else if (!sessions.some((/** @type {any} */ s) => s.key === this.sentimentSession)) this.sentimentSession = sessions[0]?.key || null
      this.render(report, sessions)
    } catch (err) {
      if (ticket !== this.loading) return
      fill(this.body, h('div.empty-main', h('h2', 'Analytics could not be loaded'), h('p.muted', /** @type {Error} */ (err).message)))
    } finally {
      if (ticket === this.loading) this.el.classList.remove('busy')
    }
  }

  /** @param {any} tenant */
  renderScopes (tenant) {
    const b = tenant.breakdowns || {}
    const group = (/** @type {string} */ label, /** @type {string} */ scope, /** @type {any[]} */ items) => items?.length
      ? h('optgroup', { label }, ...items.map((i) => h('option', { value: `${scope}:${i.key}` }, i.label)))
      : null
    fill(this.scopeSelect,
      h('option', { value: 'tenant' }, 'Whole workspace'),
      group('Sessions', 'session', b.session), group('People', 'user', b.user),
      group('Assistants', 'assistant', b.assistant), group('Models', 'model', b.model))
    const current = this.scope === 'tenant' ? 'tenant' : `${this.scope}:${this.id}`
    if (![...this.scopeSelect.options].some((o) => o.value === current)) this.scopeSelect.appendChild(h('option', { value: current }, this.id))
    this.scopeSelect.value = current
  }

  destroy () {
    this.loading++
    for (const c of this.charts) c.destroy()
    this.charts = []
  }

  /** @param {any} r the report @param {any[]} sessions the workspace's sessions, most active first */
  render (r, sessions) {
    for (const c of this.charts) c.destroy()
    this.charts = []
    const days = this.days(r)
    const series = new Map(r.series.map((/** @type {any} */ d) => [d.day, d]))
    const at = (/** @type {string} */ day, /** @type {string} */ key) => /** @type {any} */ (series.get(day))?.[key] ?? 0
    const kinds = Object.entries(r.messages_by_kind).map(([k, n]) => `${num(/** @type {number} */ (n))} ${k}`).join(' · ')
    const llm = r.llm
    const kpis = h('div.kpis',
      kpi('messages', 'Messages', num(r.messages), kinds || 'none yet'),
      kpi('active_users', 'Active people', num(r.active_users), 'humans and bots who wrote'),
      kpi('sessions', 'Sessions', num(r.sessions), `${num(r.sessions_created)} created in the period`),
      kpi('llm_tokens', 'LLM tokens', num(llm.input_tokens + llm.output_tokens), `${num(llm.input_tokens)} in · ${num(llm.output_tokens)} out`),
      kpi('cost', 'LLM cost', money(llm.cost), `${num(llm.cost.priced_generations)} of ${num(llm.generations)} answers priced`),
      kpi('first_token', 'First token', millis(llm.first_token_ms.p50), `p50 · p99 ${millis(llm.first_token_ms.p99)}`),
      kpi('human_response', 'Human replies', seconds(r.human_response_seconds.p50), `p50 · p99 ${seconds(r.human_response_seconds.p99)} (${num(r.human_response_seconds.count)})`),
      this.qualityKpi(r.quality))
    const activity = this.chart({
      type: 'bar',
      data: {
        labels: days.map(shortDay),
        datasets: [
          { type: 'bar', label: 'Messages', data: days.map((d) => at(d, 'messages')), backgroundColor: fade(COLORS.accent, 0.75), borderRadius: 4, yAxisID: 'y', order: 2 },
          { type: 'line', label: 'Active people', data: days.map((d) => at(d, 'active_users')), borderColor: COLORS.teal, backgroundColor: COLORS.teal, tension: 0.3, pointRadius: 2.5, yAxisID: 'y1', order: 1 },
          { type: 'line', label: 'Sessions', data: days.map((d) => at(d, 'sessions')), borderColor: COLORS.amber, backgroundColor: COLORS.amber, borderDash: [5, 4], tension: 0.3, pointRadius: 2.5, yAxisID: 'y1', order: 0 }
        ]
      },
      options: {
        interaction: { mode: 'index', intersect: false },
        scales: { x: { grid: { display: false } }, y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: 'messages' } }, y1: { beginAtZero: true, position: 'right', ticks: { precision: 0 }, grid: { display: false }, title: { display: true, text: 'people, sessions' } } }
      }
    }, { name: 'activity', height: 260, describe: `Messages per day: ${describeDays(r.series, 'messages')}` })
    const tokens = this.chart({
      type: 'bar',
      data: { labels: days.map(shortDay), datasets: [{ label: 'LLM tokens', data: days.map((d) => at(d, 'llm_tokens')), backgroundColor: fade(COLORS.violet, 0.7), borderRadius: 4 }] },
      options: { plugins: { legend: { display: false } }, scales: { x: { grid: { display: false } }, y: { beginAtZero: true, ticks: { precision: 0 } } } }
    }, { name: 'tokens', describe: `LLM tokens per day: ${describeDays(r.series, 'llm_tokens')}` })

    fill(this.body,
      r.truncated ? h('div.alert', 'This period holds more messages than one report reads; the numbers cover the first 200,000.') : null,
      kpis,
      h('div.dash-grid',
        card('Activity', 'Messages per day, with the people who wrote and the sessions they wrote in.', activity, 'wide'),
        card('LLM tokens per day', 'Input and output tokens of assistant answers.', tokens),
        this.qualityCard(r.quality),
        this.groupCard('By model', 'model', r.breakdowns?.model || []),
        this.groupCard('By assistant', 'assistant', r.breakdowns?.assistant || []),
        this.engagementCard(r),
        this.sentimentCard(sessions)),
      this.summaryTable(r))
    this.loadSentiment()
  }

  /** Every day of the period, so quiet days show as zero. @param {any} r */
  days (r) {
    const today = new Date().toISOString().slice(0, 10)
    const first = this.period === 'all' ? (r.series[0]?.day || today) : new Date(Date.now() - (Number(this.period) - 1) * DAY).toISOString().slice(0, 10)
    const last = r.series.length && r.series[r.series.length - 1].day > today ? r.series[r.series.length - 1].day : today
    return dayRange(first, last)
  }

  /** @param {import('chart.js').ChartConfiguration} config @param {{name: string, describe: string, height?: number}} options */
  chart (config, options) {
    const { el, chart } = chartBox(config, options)
    this.charts.push(chart)
    return el
  }

  /** @param {any} q */
  qualityKpi (q) {
    return kpi('quality', 'Quality score', q.score.toFixed(1), 'out of 100', helpButton())
  }

  /** @param {any} q */
  qualityCard (q) {
    const doughnut = this.chart({
      type: 'doughnut',
      data: { labels: ['Score', ''], datasets: [{ data: [q.score, 100 - q.score], backgroundColor: [COLORS.accent, '#eceef4'], borderWidth: 0 }] },
      options: { cutout: '74%', rotation: -90, circumference: 180, plugins: { legend: { display: false }, tooltip: { enabled: false } } }
    }, { name: 'quality', height: 120, describe: `Quality score ${q.score} of 100` })
    return card('Quality score', null,
      h('div.quality',
        h('div.gauge', doughnut, h('div.gauge-value', h('strong', q.score.toFixed(1)), h('span.muted.small', '/ 100'))),
        h('ul.parts', ...PARTS.map(([key, label, weight]) => h('li', { 'data-part': key },
          h('div.part-line', h('span', label), h('span.muted.small', `× ${weight.toFixed(2)}`), h('strong', `${Math.round(q.parts[key] * 100)}%`)),
          h('div.bar', h('span', { style: { width: `${Math.round(q.parts[key] * 100)}%` } })))))),
      h('p.formula-note.muted.small', 'How it is computed: ', helpButton('formula')))
  }

  /** @param {string} title @param {string} by @param {any[]} groups */
  groupCard (title, by, groups) {
    const llm = groups.filter((g) => g.generations > 0)
    if (!llm.length) return card(title, 'Tokens and cost of assistant answers.', h('p.muted.empty-card', 'No assistant answers in this period.'))
    const chart = this.chart({
      type: 'bar',
      data: {
        labels: llm.map((g) => g.label),
        datasets: [
          { label: 'Input tokens', data: llm.map((g) => g.input_tokens), backgroundColor: fade(COLORS.sky, 0.75), borderRadius: 3 },
          { label: 'Output tokens', data: llm.map((g) => g.output_tokens), backgroundColor: fade(COLORS.accent, 0.8), borderRadius: 3 }
        ]
      },
      options: { indexAxis: 'y', scales: { x: { stacked: true, beginAtZero: true }, y: { stacked: true, grid: { display: false } } } }
    }, { name: `by-${by}`, height: Math.max(130, 46 * llm.length + 60), describe: `Tokens by ${by}: ${llm.map((g) => `${g.label} ${g.input_tokens + g.output_tokens}`).join(', ')}` })
    return card(title, 'Tokens, cost and time to first token (p50 / p99) of assistant answers.', chart,
      h('table.data.compact', { 'data-breakdown': by },
        h('thead', h('tr', h('th', by === 'model' ? 'Model' : 'Assistant'), h('th.n', 'Answers'), h('th.n', 'Tokens'), h('th.n', 'Cost'), h('th.n', { title: 'Time to first token, p50 / p99' }, 'First token'))),
        h('tbody', ...llm.map((g) => h('tr', { 'data-key': g.key },
          h('td', g.label), h('td.n', num(g.generations)), h('td.n', num(g.input_tokens + g.output_tokens)), h('td.n', money(g.cost)),
          h('td.n', millisPair(g.first_token_ms.p50, g.first_token_ms.p99)))))))
  }

  /** @param {any} r */
  engagementCard (r) {
    const intents = Object.entries(r.intents).sort((a, b) => /** @type {number} */ (b[1]) - /** @type {number} */ (a[1]))
    const e = r.engagement
    const doughnut = intents.length
      ? this.chart({
        type: 'doughnut',
        data: { labels: intents.map(([k]) => k.replace('_', ' ')), datasets: [{ data: intents.map(([, n]) => n), backgroundColor: PALETTE, borderWidth: 2, borderColor: '#fff' }] },
        options: { cutout: '58%', plugins: { legend: { position: 'right' } } }
      }, { name: 'intents', height: 150, describe: `Intents: ${intents.map(([k, n]) => `${k} ${n}`).join(', ')}` })
      : h('p.muted.empty-card', 'No analysed messages yet.')
    return card('Engagement', 'How much people write, and what their messages do.',
      h('div.stats',
        stat('Messages per person', e.messages_per_user.toFixed(1)),
        stat('Messages per session', e.messages_per_session.toFixed(1)),
        stat('Sessions with 2+ writers', `${num(e.conversational_sessions)} of ${num(r.sessions)}`),
        stat('Mean sentiment', `${r.sentiment.mean >= 0 ? '+' : ''}${r.sentiment.mean.toFixed(2)}`)),
      doughnut)
  }

  /** @param {any[]} sessions */
  sentimentCard (sessions) {
    this.sentimentBody = h('div.sentiment-body', h('p.muted.empty-card', sessions.length ? 'Loading…' : 'No session has messages in this period.'))
    const picker = this.scope === 'session' || !sessions.length
      ? null
      : /** @type {HTMLSelectElement} */ (h('select.select.sm', {
          'aria-label': 'Session for the sentiment trend', name: 'sentiment-session',
          on: { change: (/** @type {Event} */ ev) => { this.sentimentSession = /** @type {HTMLSelectElement} */ (ev.target).value; this.loadSentiment() } }
        }, ...sessions.map((s) => h('option', { value: s.key, selected: s.key === this.sentimentSession }, s.label))))
    return card('Sentiment trend', 'Per message (VADER compound score, −1 to +1), in the order they were written.', picker, this.sentimentBody)
  }

  async loadSentiment () {
    const sid = this.sentimentSession
    const body = this.sentimentBody
    if (!sid || !body) return
    let ins
    try {
      ins = await this.client.rest.insights(sid)
    } catch (err) {
      fill(body, h('p.muted.empty-card', `The insights of this session could not be loaded: ${/** @type {Error} */ (err).message}`))
      return
    }
    if (sid !== this.sentimentSession || body !== this.sentimentBody) return
    const points = ins.messages.filter((/** @type {any} */ m) => m.sentiment !== null)
    if (!points.length) {
      fill(body, h('p.muted.empty-card', ins.pending ? 'This session is being analysed; its trend appears in a moment.' : 'No analysed messages in this session yet.'))
      return
    }
    const s = ins.sentiment
    const el = this.chart({
      type: 'line',
      data: {
        labels: points.map((/** @type {any} */ m) => `#${m.seq}`),
        datasets: [{
          label: 'Sentiment',
          data: points.map((/** @type {any} */ m) => m.sentiment),
          borderColor: COLORS.teal,
          backgroundColor: fade(COLORS.teal, 0.12),
          fill: 'origin',
          tension: 0.35,
          pointRadius: 3,
          pointBackgroundColor: points.map((/** @type {any} */ m) => m.sentiment > 0.05 ? COLORS.teal : m.sentiment < -0.05 ? COLORS.rose : COLORS.slate)
        }]
      },
      options: {
        plugins: { legend: { display: false }, tooltip: { callbacks: { afterLabel: (ctx) => `${points[ctx.dataIndex].author} · ${points[ctx.dataIndex].intent || ''}` } } },
        scales: { y: { min: -1, max: 1, ticks: { stepSize: 0.5 } }, x: { grid: { display: false } } }
      }
    }, { name: 'sentiment', height: 200, describe: `Sentiment of ${points.length} messages, mean ${s.mean.toFixed(2)}` })
    fill(body, el, h('div.stats.inline',
      stat('Mean', `${s.mean >= 0 ? '+' : ''}${s.mean.toFixed(2)}`),
      stat('Change first → last', `${s.change >= 0 ? '+' : ''}${s.change.toFixed(2)}`),
      stat('Analysed messages', num(points.length))))
  }

  /** Every number of the report as a table: what the REST answer says, readable. @param {any} r */
  summaryTable (r) {
    const llm = r.llm
    /** @type {Array<[string, string, string]>} */
    const rows = [
      ['messages', 'Messages', num(r.messages)],
      ['active_users', 'Active people', num(r.active_users)],
      ['sessions', 'Sessions with messages', num(r.sessions)],
      ['sessions_created', 'Sessions created', num(r.sessions_created)],
      ['llm.generations', 'LLM answers', num(llm.generations)],
      ['llm.finished_ok', 'LLM answers finished normally', num(llm.finished_ok)],
      ['llm.input_tokens', 'Input tokens', num(llm.input_tokens)],
      ['llm.output_tokens', 'Output tokens', num(llm.output_tokens)],
      ['llm.cost.total', 'Cost', money(llm.cost)],
      ['llm.first_token_ms.p50', 'Time to first token p50', millis(llm.first_token_ms.p50)],
      ['llm.first_token_ms.p99', 'Time to first token p99', millis(llm.first_token_ms.p99)],
      ['llm.total_ms.p50', 'Whole answer p50', millis(llm.total_ms.p50)],
      ['human_response_seconds.p50', 'Human response p50', seconds(r.human_response_seconds.p50)],
      ['human_response_seconds.p99', 'Human response p99', seconds(r.human_response_seconds.p99)],
      ['engagement.messages_per_user', 'Messages per person', r.engagement.messages_per_user.toFixed(2)],
      ['engagement.conversational_sessions', 'Sessions with 2+ writers', num(r.engagement.conversational_sessions)],
      ['sentiment.mean', 'Mean sentiment', r.sentiment.mean.toFixed(3)],
      ['quality.score', 'Quality score', r.quality.score.toFixed(1)]
    ]
    return h('details.card.summary', { open: true },
      h('summary', h('h2', 'All numbers'), h('span.muted.small', 'as the analytics API returns them')),
      h('table.data', h('tbody', ...rows.map(([key, label, value]) => h('tr', { 'data-metric': key }, h('th', label), h('td.n', value))))))
  }

  async downloadCsv () {
    try {
      const text = await this.client.rest.analyticsCsv({ ...this.query(), by: ['model', 'assistant'] })
      const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }))
      const a = h('a', { href: url, download: `parley-analytics-${this.scope}-${this.period === 'all' ? 'all' : `${this.period}d`}.csv` })
      document.body.appendChild(a)
      a.click()
      a.remove()
      setTimeout(() => URL.revokeObjectURL(url), 10000)
    } catch (err) { toast(`The CSV could not be made: ${/** @type {Error} */ (err).message}`, 'error') }
  }
}

/** @param {string} key @param {string} label @param {string} value @param {string} sub @param {HTMLElement} [extra] */
function kpi (key, label, value, sub, extra) {
  return h('div.kpi', { 'data-kpi': key }, h('div.kpi-label', label, extra || null), h('div.kpi-value', value), h('div.kpi-sub.muted.small', sub))
}

/** @param {string} label @param {string} value */
function stat (label, value) {
  return h('div.stat', h('span.muted.small', label), h('strong', value))
}

/** @param {string} title @param {string|null} sub @param {...any} children */
function card (title, sub, ...children) {
  const wide = children[children.length - 1] === 'wide'
  if (wide) children.pop()
  return h(`section.card${wide ? '.wide' : ''}`, h('header.card-head', h('h2', title), sub ? h('p.muted.small', sub) : null), ...children)
}

/** The quality formula: a tooltip on hover, a popover on click or tap. @param {string} [text] */
function helpButton (text) {
  const pop = h('div.help-pop', { role: 'tooltip' }, h('strong', 'Quality score (0–100)'), h('pre', QUALITY_FORMULA), h('p', 'It measures these four things and nothing else: tone, answered questions, working assistants and participation.'))
  const btn = h(`button.help${text ? '.text' : ''}`, {
    type: 'button', title: QUALITY_FORMULA, 'aria-label': 'How the quality score is computed', 'data-action': 'quality-help',
    on: { click: (/** @type {Event} */ e) => { e.stopPropagation(); wrap.classList.toggle('open') } }
  }, text ? 'the formula' : '?')
  const wrap = h('span.help-wrap', btn, pop)
  return wrap
}

/** "25 Nov". @param {string} day */
function shortDay (day) {
  return new Date(`${day}T00:00:00Z`).toLocaleDateString('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' })
}

/** @param {any[]} series @param {string} key */
function describeDays (series, key) {
  const days = series.filter((d) => d[key])
  return days.length ? days.map((d) => `${d.day} ${d[key]}`).join(', ') : 'none'
}
