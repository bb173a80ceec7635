// Builds the SDK (dist/parley.js, an ES module for browsers and Node) and the workspace
// (index.html + content-hashed assets) into the folder the server serves.
import { build } from 'esbuild'
import { mkdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const web = join(here, '..', 'server', 'parley', 'web', 'static')

await build({
  entryPoints: [join(here, 'src/sdk/index.js')],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  outfile: join(here, 'dist/parley.js'),
  sourcemap: true,
  logLevel: 'warning'
})
copyFileSync(join(here, 'index.d.ts'), join(here, 'dist/parley.d.ts'))

rmSync(web, { recursive: true, force: true })
mkdirSync(join(web, 'assets'), { recursive: true })
const result = await build({
  entryPoints: { app: join(here, 'src/app/main.js'), styles: join(here, 'src/app/styles.css') },
  bundle: true,
  format: 'esm',
  // The dashboard (and Chart.js) load as their own chunk when first opened.
  splitting: true,
  target: ['es2022', 'chrome110', 'safari16', 'firefox115'],
  minify: true,
  sourcemap: true,
  outdir: join(web, 'assets'),
  entryNames: '[name]-[hash]',
  metafile: true,
  logLevel: 'warning'
})
const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p))
const js = outputs.find((f) => /^app-.*\.js$/.test(f))
const css = outputs.find((f) => /^styles-.*\.css$/.test(f))
const html = readFileSync(join(here, 'src/app/index.html'), 'utf8').replace('%JS%', js).replace('%CSS%', css)
writeFileSync(join(web, 'index.html'), html)
console.log(`built dist/parley.js and the workspace (${js}, ${css})`)
