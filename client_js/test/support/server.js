// Starts a real Parley server (the project's .venv) on a free port with a fresh data folder, and
// signs tokens with its secret, for the SDK and browser tests.

import { spawn } from 'node:child_process'
import { createHmac, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')

function freePort () {
  return new Promise((res, rej) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', rej)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {any} */ (srv.address())
      srv.close(() => res(port))
    })
  })
}

const b64url = (/** @type {Buffer|string} */ data) => Buffer.from(data).toString('base64url')

/**
 * @param {{env?: Record<string, string>}} [options]
 */
export async function startServer ({ env = {} } = {}) {
  const exe = join(ROOT, '.venv', 'bin', 'parley')
  if (!existsSync(exe)) throw new Error(`${exe} is missing: run make install-dev first`)
  const port = await freePort()
  const dataDir = mkdtempSync(join(tmpdir(), 'parley-js-'))
  const secret = randomBytes(32).toString('hex')
  const child = spawn(exe, ['serve', '--port', String(port), '--data-dir', dataDir], {
    env: {
      ...process.env,
      PARLEY_SECRET: secret,
      PARLEY_LOG_LEVEL: 'warning',
      PARLEY_BROKER_URL: 'memory://',
      // No test here searches by meaning; loading the embedding model would cost each server
      // seconds of CPU before it is ready.
      PARLEY_SEMANTIC: 'false',
      ...env
    },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d; if (stderr.length > 20000) stderr = stderr.slice(-20000) })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 30000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`parley serve exited (${child.exitCode}):\n${stderr}`)
    try {
      const res = await fetch(`${url}/readyz`)
      if (res.ok) break
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) { child.kill(); throw new Error(`parley serve did not get ready:\n${stderr}`) }
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    url,
    port,
    /**
     * A bearer token signed like `parley token create` does.
     * @param {string} user
     * @param {{name?: string, tenant?: string, kind?: string, role?: string}} [o]
     */
    token (user, o = {}) {
      const now = Math.floor(Date.now() / 1000)
      const claims = { iss: 'parley', sub: user, tid: o.tenant || 'default', name: o.name || user, kind: o.kind || 'human', role: o.role || 'member', iat: now, exp: now + 3600 }
      const head = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`
      return `${head}.${b64url(createHmac('sha256', secret).update(head).digest())}`
    },
    get stderr () { return stderr },
    async stop () {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 10000)
        await exited
        clearTimeout(timer)
      }
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
}
