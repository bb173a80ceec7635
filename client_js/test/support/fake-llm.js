// A fake OpenAI-compatible provider for the browser tests: a real HTTP server on loopback that
// streams Chat Completions exactly as the API does (role chunk, text chunks, finish, usage,
// [DONE]), so the relay's openai_compatible provider talks to it unchanged and stores real
// token counts, costs and first-token times.

import { createServer } from 'node:http'

/**
 * @param {{delayMs?: number}} [options] pause before the first token (a measurable TTFT)
 */
export async function startFakeLlm ({ delayMs = 60 } = {}) {
  const requests = []
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { message: 'not found', type: 'invalid_request_error' } }))
      return
    }
    let raw = ''
    req.on('data', (d) => { raw += d })
    req.on('end', async () => {
      const body = JSON.parse(raw)
      requests.push(body)
      const last = [...body.messages].reverse().find((m) => m.role === 'user')
      const asked = typeof last?.content === 'string' ? last.content : (last?.content || []).map((p) => p.text || '').join(' ')
      const words = `Here is what I found for ${body.model}: the numbers look healthy, and the question "${asked.slice(0, 60)}" has a clear answer.`.split(' ')
      const base = { id: `chatcmpl-${requests.length}`, object: 'chat.completion.chunk', created: 1700000000, model: body.model, system_fingerprint: 'fp_fake' }
      const send = (choices, extra = {}) => res.write(`data: ${JSON.stringify({ ...base, choices, ...extra })}\n\n`)
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      send([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }])
      await new Promise((r) => setTimeout(r, delayMs))
      for (const [i, w] of words.entries()) send([{ index: 0, delta: { content: (i ? ' ' : '') + w }, logprobs: null, finish_reason: null }])
      send([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }])
      const prompt = Math.max(1, Math.floor(JSON.stringify(body.messages).length / 4))
      send([], { usage: { prompt_tokens: prompt, completion_tokens: words.length, total_tokens: prompt + words.length } })
      res.end('data: [DONE]\n\n')
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(null)))
  const { port } = /** @type {any} */ (server.address())
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve(null)))
  }
}
