// Compiled by `npm run typecheck` (tsc --noEmit): the declared types are usable as documented.
import { ParleyClient, AuthError, type Stream, type Annotation, type SearchResult, type AnalyticsReport, type Template } from '../index.js'

async function example (token: string): Promise<void> {
  const client = new ParleyClient({ url: 'http://127.0.0.1:8000', token })
  try {
    await client.connect()
  } catch (err) {
    if (err instanceof AuthError) return
    throw err
  }
  const session = await client.rest.createSession({ title: 'Plans', tags: ['demo'] })
  const sub = await client.subscribe(session.id, { sinceSeq: 0 })
  sub.on('stream', (stream: Stream, kind: string) => console.log(kind, stream.text))
  const ack = await sub.send({ text: 'hello', clientId: 'c-1' })
  const answer = await sub.ask('helper', { messageId: ack.message_id })
  if (answer.stream_id) await sub.stop(answer.stream_id)
  const doc = await client.document(session.id)
  const id: string = doc.annotate({ messageId: ack.message_id, range: { start: 0, end: 5 }, body: 'why?' })
  const list: Annotation[] = doc.annotations()
  doc.resolve(id)
  const parsed = await client.rest.parseSearch('my sessions about plans from last week')
  const found: SearchResult = await client.rest.searchQuery({ ...parsed.query, limit: 10 })
  const report: AnalyticsReport = await client.rest.analytics({ scope: 'session', id: session.id, by: ['model'] })
  const templates: Template[] = (await client.rest.listTemplates()).items
  const made = await client.rest.createSessionFromTemplate({ template: templates[0].name, variables: {} })
  console.log(found.facets.total, report.breakdowns?.model?.[0]?.cost.total, report.quality.parts.tone, made.id)
  console.log(list.length, sub.lastSeq, client.user?.name)
}
void example
