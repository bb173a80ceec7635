// Types of the Parley JavaScript SDK (src/sdk/). Shapes follow docs/protocol.md.
import type * as Y from 'yjs'
import type { Awareness } from 'y-protocols/awareness'

export interface User { id: string; name: string; kind: 'human' | 'bot' | 'assistant' }
export interface Session {
  id: string; title: string; metadata: Record<string, unknown>; tags: string[]
  status: 'active' | 'archived'; created_by: string; created_at: string; updated_at: string; last_seq: number
}
export interface Message {
  id: string; session: string; seq: number; author: string; parent_id: string | null
  text: string; parts: Record<string, unknown>[] | null; metadata: Record<string, any>
  client_id: string | null; created_at: string; edited_at: string | null; deleted_at: string | null
}
export interface Participant { user_id: string; role: 'owner' | 'editor' | 'commenter' | 'viewer'; name: string; kind: string; joined_at: string }
export interface Annotation {
  id: string; message_id: string; range: { start: number; end: number } | null
  kind: 'comment' | 'highlight' | 'label'; body: string; author: string | null; created: string | null
  resolved: boolean; resolved_by: string | null; resolved_at: string | null
  replies: { id: string; author: string; body: string; created: string }[]
}
export interface Assistant {
  id: string; name: string; provider: string; model: string; system_prompt: string
  params: Record<string, unknown>; trigger: 'mention' | 'message' | 'manual'
  busy_policy: 'queue' | 'interrupt' | 'reject'; [key: string]: unknown
}
export interface EventFrame<D = any> {
  type: 'event'; session: string; seq: number; event: string; data: D
  actor?: string; ts: string; ephemeral?: boolean
}
export interface Ack { type: 'ack'; ref: string | number | null; session?: string; seq?: number; [key: string]: any }
export interface SendAck extends Ack { seq: number; message_id: string; client_id: string; duplicate: boolean }
export interface AskAck extends Ack { stream_id: string | null; status: 'started' | 'queued' | 'duplicate'; prompt_id?: string; position?: number }
export interface Stream {
  id: string; assistant: { id: string; name: string; user_id: string } | null
  promptId: string | null; askedBy: string | null; text: string; end: number
  done: boolean; finishReason: string | null; messageId: string | null
}
export interface PresenceEntry {
  user: { id: string; name: string; color: string }; clientIds: number[]
  viewing: string | null; selection: { message_id: string; start: number; end: number } | null; typing: boolean
}
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'
export interface OutgoingMessage {
  text?: string; parts?: Record<string, unknown>[]; parentId?: string | null
  metadata?: Record<string, unknown>; clientId?: string
}
export interface AskOptions { text?: string; messageId?: string; parentId?: string; clientId?: string }

type Off = () => void

export class Emitter {
  on (name: string, fn: (...args: any[]) => void): Off
  off (name: string, fn: (...args: any[]) => void): void
  once (name: string, test?: (...args: any[]) => boolean, timeoutMs?: number): Promise<any>
  emit (name: string, ...args: any[]): void
}

export class ParleyError extends Error {
  constructor (code: string, message: string, extra?: { status?: number | null; details?: unknown })
  code: string; status: number | null; details: unknown
}
export class AuthError extends ParleyError {}
export class NotFoundError extends ParleyError {}
export class ForbiddenError extends ParleyError {}
export class ConflictError extends ParleyError {}
export class RateLimitError extends ParleyError { retryAfter: number | null }
export class ValidationError extends ParleyError {}
export class ConnectionError extends ParleyError {}
export class TimeoutError extends ParleyError {}
export function errorFromServer (body: { code: string; message?: string; details?: unknown }, status?: number | null): ParleyError

export class RestClient {
  constructor (options: { baseUrl: string; token: string; fetch?: typeof fetch })
  request (method: string, path: string, options?: { body?: unknown; headers?: Record<string, string> }): Promise<any>
  me (): Promise<{ id: string; tenant: string; name: string; kind: string }>
  listSessions (query?: { status?: string; tag?: string; limit?: number; cursor?: string }): Promise<{ items: Session[]; next_cursor: string | null }>
  createSession (body?: { title?: string; tags?: string[]; metadata?: Record<string, unknown> }): Promise<Session>
  getSession (id: string): Promise<Session>
  updateSession (id: string, changes: Partial<Pick<Session, 'title' | 'metadata' | 'tags' | 'status'>>): Promise<Session>
  archiveSession (id: string): Promise<Session>
  deleteSession (id: string): Promise<null>
  listMessages (id: string, query?: { after_seq?: number; before_seq?: number; limit?: number }): Promise<{ items: Message[] }>
  allMessages (id: string): Promise<Message[]>
  postMessage (id: string, body: { text?: string; parts?: object[]; parent_id?: string | null; metadata?: object; client_id?: string }): Promise<{ message: Message; seq: number; duplicate: boolean }>
  editMessage (id: string, messageId: string, changes: { text?: string; parts?: object[]; metadata?: object }): Promise<{ message: Message; seq: number }>
  deleteMessage (id: string, messageId: string): Promise<{ message: Message; seq: number }>
  listEvents (id: string, query?: { after_seq?: number; limit?: number }): Promise<{ items: EventFrame[] }>
  listParticipants (id: string): Promise<{ items: Participant[] }>
  addParticipant (id: string, userId: string, role?: Participant['role']): Promise<Participant>
  removeParticipant (id: string, userId: string): Promise<null>
  presence (id: string): Promise<{ items: User[] }>
  listAnnotations (id: string, query?: { message_id?: string }): Promise<{ items: Annotation[] }>
  getDocument (id: string): Promise<{ notes: string; annotations: Annotation[]; labels: Record<string, unknown>; pins: string[]; size: Record<string, number> }>
  listAssistants (id: string): Promise<{ items: Assistant[] }>
  addAssistant (id: string, body: Partial<Assistant> & { name: string }): Promise<Assistant>
  updateAssistant (id: string, name: string, changes: Partial<Assistant>): Promise<Assistant>
  removeAssistant (id: string, name: string): Promise<null>
  ask (id: string, name: string, body?: { text?: string; message_id?: string; parent_id?: string; client_id?: string }): Promise<AskAck>
  listStreams (id: string): Promise<{ items: any[] }>
  stopStream (id: string, streamId: string): Promise<{ status: 'stopping' | 'cancelled' }>
  requestText (path: string): Promise<string>
  search (query: SearchQuery): Promise<SearchResult>
  searchQuery (query: SearchQuery): Promise<SearchResult>
  parseSearch (q: string): Promise<ParsedQuery>
  insights (id: string): Promise<SessionInsights>
  analytics (query?: AnalyticsQuery): Promise<AnalyticsReport>
  analyticsCsv (query?: AnalyticsQuery): Promise<string>
  listTemplates (): Promise<{ items: Template[] }>
  getTemplate (name: string): Promise<Template>
  createSessionFromTemplate (body: { template: string; variables?: Record<string, string>; title?: string }): Promise<Session>
}

export interface SearchQuery {
  q?: string | null; participant?: string | null; owner?: string | null; author?: string | null
  tag?: string | null; assistant?: string | null; model?: string | null; status?: 'active' | 'archived' | null
  from?: string | null; to?: string | null; kinds?: Array<'message' | 'title' | 'tag' | 'annotation'> | null
  limit?: number; cursor?: string | null
}
export interface FacetValue { value: string; count: number }
export interface SearchHit {
  kind: 'message' | 'title' | 'tag' | 'annotation'; score: number
  session: { id: string; title: string | null; status: string; tags: string[] }
  message: { id: string; seq: number } | null; ref_id: string; author: string | null; created_at: string
  snippet: { text: string; highlights: Array<[number, number]>; html: string }
}
export interface SearchResult {
  query: SearchQuery; items: SearchHit[]; next_cursor: string | null; engine: string
  facets: {
    total: number; status: FacetValue[]; tag: FacetValue[]; participant: FacetValue[]; assistant: FacetValue[]; model: FacetValue[]
    date: { from: string | null; to: string | null; days: Array<{ day: string; count: number }> }
  }
}
export interface ParsedQuery { query: SearchQuery; method: 'rules' | 'llm'; notes: string[]; fallback: string | null }
export interface SessionInsights {
  session: string; analyzed: boolean; pending: boolean; keywords: any[]; topics: any[]
  sentiment: { mean: number; points: number[]; change: number; messages: number; method: string }
  intents: { counts: Record<string, number>; method: string }
  messages: Array<{ id: string; seq: number; author: string; sentiment: number | null; sentiment_label: string | null; intent: string | null }>
  [key: string]: any
}
export interface AnalyticsQuery {
  scope?: 'tenant' | 'session' | 'user' | 'assistant' | 'model'; id?: string; from?: string; to?: string
  by?: Array<'model' | 'assistant' | 'user' | 'session'>
}
export interface Percentiles { p50: number | null; p99: number | null }
export interface AnalyticsCost { total: number; currency: string | null; priced_generations: number }
export interface AnalyticsGroup {
  key: string; label: string; messages: number; generations: number; input_tokens: number; output_tokens: number
  cost: AnalyticsCost; first_token_ms: Percentiles
}
export interface AnalyticsReport {
  scope: string; id: string | null; from: string | null; to: string | null; sessions_created: number
  messages: number; messages_by_kind: Record<string, number>; active_users: number; sessions: number
  llm: { generations: number; finished_ok: number; input_tokens: number; output_tokens: number; cost: AnalyticsCost; first_token_ms: Percentiles; total_ms: Percentiles }
  human_response_seconds: Percentiles & { count: number }
  engagement: { messages_per_user: number; messages_per_session: number; conversational_sessions: number }
  sentiment: { mean: number; analysed_messages: number }; intents: Record<string, number>
  quality: { score: number; parts: { tone: number; answered: number; assistant_ok: number; engagement: number } }
  series: Array<{ day: string; messages: number; active_users: number; sessions: number; llm_tokens: number }>
  breakdowns?: Partial<Record<'model' | 'assistant' | 'user' | 'session', AnalyticsGroup[]>>
  truncated: boolean
}
export interface Template {
  name: string; description: string; title: string; source: 'builtin' | 'tenant'
  variables: Record<string, { description: string; default: string | null; required: boolean | null }>
  tags: string[]; metadata: Record<string, unknown>
  assistants: Array<{ name: string; provider: string; model: string; system_prompt: string; trigger: string; params: Record<string, unknown> }>
  notes: Array<{ text: string; pin: boolean }>; annotations: Array<{ note: number; kind: string; body: string }>; document_notes: string
  [key: string]: any
}

export class StreamAssembler {
  constructor (hooks: { onChange: (stream: Stream, kind: string) => void; requestSnapshot: () => void })
  streams: Map<string, Stream>
  running (): Stream[]
  handle (frame: { event: string; data: any }): boolean
  reset (): void
}

export class Subscription extends Emitter {
  readonly client: ParleyClient
  readonly session: string
  /** The seq of the last durable event processed: the resume position. */
  lastSeq: number | null
  presence: Map<string, { user_id: string; name: string; kind: string }>
  typing: Map<string, string>
  readonly streams: Stream[]
  send (message: string | OutgoingMessage): Promise<SendAck>
  edit (messageId: string, changes: { text?: string; parts?: object[]; metadata?: object }): Promise<Ack>
  delete (messageId: string): Promise<Ack>
  setTyping (active?: boolean): void
  ask (assistant: string, options?: AskOptions): Promise<AskAck>
  stop (streamId: string): Promise<Ack>
  unsubscribe (): Promise<void>
}

export class SessionDocument extends Emitter {
  readonly session: string
  readonly doc: Y.Doc
  readonly awareness: Awareness
  role: Participant['role'] | null
  synced: boolean
  whenSynced (timeoutMs?: number): Promise<boolean>
  rejoin (): Promise<void>
  setPresence (fields: Record<string, unknown>): void
  presence (): PresenceEntry[]
  annotations (): Annotation[]
  annotate (a: { messageId: string; range?: { start: number; end: number } | null; kind?: Annotation['kind']; body?: string }): string
  reply (id: string, body: string): void
  resolve (id: string, resolved?: boolean): void
  removeAnnotation (id: string): void
  close (): Promise<void>
}

export interface ClientOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:8000`. */
  url: string
  token: string
  /** A WebSocket constructor; defaults to the global one (pass the `ws` package in Node 20). */
  WebSocket?: unknown
  fetch?: typeof fetch
  reconnect?: boolean
  minBackoffMs?: number
  maxBackoffMs?: number
  requestTimeoutMs?: number
}

export class ParleyClient extends Emitter {
  constructor (options: ClientOptions)
  readonly url: string
  readonly rest: RestClient
  state: ConnectionState
  user: User | null
  tenant: string | null
  connect (): Promise<this>
  request (frame: Record<string, unknown>, options?: { retry?: boolean; timeoutMs?: number }): Promise<Ack>
  subscribe (sessionId: string, options?: { sinceSeq?: number; onEvent?: (frame: EventFrame) => void }): Promise<Subscription>
  document (sessionId: string): Promise<SessionDocument>
  send (sessionId: string, message: string | OutgoingMessage): Promise<SendAck>
  edit (sessionId: string, messageId: string, changes: { text?: string; parts?: object[]; metadata?: object }): Promise<Ack>
  delete (sessionId: string, messageId: string): Promise<Ack>
  typing (sessionId: string, active?: boolean): void
  ask (sessionId: string, assistant: string, options?: AskOptions): Promise<AskAck>
  stop (sessionId: string, streamId: string): Promise<Ack>
  ping (): Promise<Ack>
  close (): void
}
