// Typed errors of the Parley SDK. Every failure the server reports carries its catalog `code`
// (docs/protocol.md#error-codes), so callers branch on `err.code` or on the class.

/** Base class of every error the SDK throws. */
export class ParleyError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{status?: number|null, details?: unknown}} [extra]
   */
  constructor (code, message, extra = {}) {
    super(message)
    this.name = 'ParleyError'
    this.code = code
    this.status = extra.status ?? null
    this.details = extra.details ?? null
  }
}

/** The token is missing, invalid or expired (401, close 4001): get a new token. */
export class AuthError extends ParleyError {
  /** @param {string} message @param {{status?: number|null, details?: unknown}} [extra] */
  constructor (message, extra) { super('unauthenticated', message, extra); this.name = 'AuthError' }
}

/** The id does not exist, or belongs to another tenant (404). */
export class NotFoundError extends ParleyError {
  /** @param {string} message @param {{status?: number|null, details?: unknown}} [extra] */
  constructor (message, extra) { super('not_found', message, extra); this.name = 'NotFoundError' }
}

/** The caller's role does not allow the action (403). */
export class ForbiddenError extends ParleyError {
  /** @param {string} message @param {{status?: number|null, details?: unknown}} [extra] */
  constructor (message, extra) { super('forbidden', message, extra); this.name = 'ForbiddenError' }
}

/** The action contradicts the current state: conflict, session_archived, assistant_busy (409). */
export class ConflictError extends ParleyError {
  /** @param {string} code @param {string} message @param {{status?: number|null, details?: unknown}} [extra] */
  constructor (code, message, extra) { super(code, message, extra); this.name = 'ConflictError' }
}

/** Too fast: rate_limited, generation_limit (429). `retryAfter` is in seconds when known. */
export class RateLimitError extends ParleyError {
  /** @param {string} code @param {string} message @param {{status?: number|null, details?: unknown}} [extra] */
  constructor (code, message, extra) {
    super(code, message, extra)
    this.name = 'RateLimitError'
    const d = /** @type {any} */ (this.details)
    this.retryAfter = d && typeof d.retry_after === 'number' ? d.retry_after : null
  }
}

/** The request was refused as invalid (400, 422): invalid_frame, invalid_request, text_too_long… */
export class ValidationError extends ParleyError {
  /** @param {string} code @param {string} message @param {{status?: number|null, details?: unknown}} [extra] */
  constructor (code, message, extra) { super(code, message, extra); this.name = 'ValidationError' }
}

/** The connection dropped before the server answered; the request may or may not have applied. */
export class ConnectionError extends ParleyError {
  /** @param {string} message @param {{status?: number|null, details?: unknown}} [extra] */
  constructor (message, extra) { super('connection_lost', message, extra); this.name = 'ConnectionError' }
}

/** No answer within the timeout. */
export class TimeoutError extends ParleyError {
  /** @param {string} message */
  constructor (message) { super('timeout', message); this.name = 'TimeoutError' }
}

const CONFLICT = new Set(['conflict', 'session_archived', 'assistant_busy', 'already_authenticated'])
const RATE = new Set(['rate_limited', 'generation_limit'])

/**
 * Build the typed error for a server error (a socket `error` frame or a REST error body).
 * @param {{code: string, message?: string, details?: unknown}} body
 * @param {number|null} [status]
 * @returns {ParleyError}
 */
export function errorFromServer (body, status = null) {
  const code = body.code || 'internal'
  const message = body.message || code
  const extra = { status, details: body.details ?? null }
  if (code === 'unauthenticated') return new AuthError(message, extra)
  if (code === 'not_found') return new NotFoundError(message, extra)
  if (code === 'forbidden') return new ForbiddenError(message, extra)
  if (CONFLICT.has(code)) return new ConflictError(code, message, extra)
  if (RATE.has(code)) return new RateLimitError(code, message, extra)
  if (status === 400 || status === 422 || /invalid|too_long|too_large|bad_/.test(code)) {
    return new ValidationError(code, message, extra)
  }
  return new ParleyError(code, message, extra)
}
