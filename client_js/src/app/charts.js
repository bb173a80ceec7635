// Chart.js, registered with only the pieces the dashboard draws (esbuild drops the rest), and
// the workspace's look for it. Every chart also gets an aria-label that reads its data out.

import {
  Chart, BarController, LineController, DoughnutController, BarElement, LineElement,
  PointElement, ArcElement, CategoryScale, LinearScale, Tooltip, Legend, Filler
} from 'chart.js'
import { h } from './dom.js'

Chart.register(BarController, LineController, DoughnutController, BarElement, LineElement,
  PointElement, ArcElement, CategoryScale, LinearScale, Tooltip, Legend, Filler)

Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
Chart.defaults.font.size = 12
Chart.defaults.color = '#6b7180'
Chart.defaults.borderColor = '#eceef3'
Chart.defaults.plugins.legend.labels.boxWidth = 10
Chart.defaults.plugins.legend.labels.boxHeight = 10
Chart.defaults.plugins.tooltip.backgroundColor = '#1f2330'
Chart.defaults.plugins.tooltip.padding = 9
Chart.defaults.plugins.tooltip.cornerRadius = 8
if (window.matchMedia('(prefers-reduced-motion: reduce)').matches) Chart.defaults.animation = false

export const COLORS = {
  accent: '#4f46e5',
  violet: '#a855f7',
  teal: '#0d9488',
  amber: '#f59e0b',
  rose: '#e11d48',
  sky: '#0284c7',
  slate: '#94a3b8'
}
export const PALETTE = [COLORS.accent, COLORS.teal, COLORS.amber, COLORS.violet, COLORS.sky, COLORS.rose, COLORS.slate]

/** A colour with transparency, for fills. @param {string} hex @param {number} alpha */
export function fade (hex, alpha) {
  const n = parseInt(hex.slice(1), 16)
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`
}

/**
 * A chart in a sized box; `describe` is what a screen reader (and a test) hears.
 * @param {import('chart.js').ChartConfiguration} config
 * @param {{height?: number, describe: string, name: string}} options
 * @returns {{el: HTMLElement, chart: Chart}}
 */
export function chartBox (config, { height = 240, describe, name }) {
  const canvas = /** @type {HTMLCanvasElement} */ (h('canvas', { role: 'img', 'aria-label': describe, 'data-chart': name }))
  const el = h('div.chart-box', { style: { height: `${height}px` } }, canvas)
  config.options = { responsive: true, maintainAspectRatio: false, ...config.options }
  const chart = new Chart(canvas, config)
  return { el, chart }
}
