// How the dashboard writes numbers: counts, times, money. No DOM, so Node tests use it too.

export const num = (/** @type {number} */ n) => n.toLocaleString('en-US')
/** @param {number|null} ms */
export const millis = (ms) => ms === null ? '–' : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`
/** @param {number|null} s */
export const seconds = (s) => s === null ? '–' : s < 60 ? `${Math.round(s)} s` : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`
/** "93 / 716 ms": two times in one unit. @param {number|null} a @param {number|null} b */
export const millisPair = (a, b) => a === null || b === null ? '–' : b < 1000 ? `${Math.round(a)} / ${Math.round(b)} ms` : `${(a / 1000).toFixed(2)} / ${(b / 1000).toFixed(2)} s`
/** @param {{total: number, currency: string|null, priced_generations: number}} c */
export const money = (c) => !c.priced_generations ? '–' : `${c.currency === 'USD' ? '$' : ''}${amount(c.total)}${c.currency && c.currency !== 'USD' ? ` ${c.currency}` : ''}`
/** Small LLM costs keep their first digits: 0.000032, 0.0010, 12.40. @param {number} x */
export const amount = (x) => x === 0 ? '0' : x >= 1 ? x.toFixed(2) : x >= 0.001 ? x.toFixed(4) : x.toFixed(Math.min(8, 1 - Math.floor(Math.log10(x))))


export const DAY = 86400000

/** The UTC days from `first` to `last` inclusive ("YYYY-MM-DD"). @param {string} first @param {string} last */
export function dayRange (first, last) {
  const out = []
  for (let t = Date.parse(`${first}T00:00:00Z`); t <= Date.parse(`${last}T00:00:00Z`) && out.length < 400; t += DAY) out.push(new Date(t).toISOString().slice(0, 10))
  return out
}
