// Parley JavaScript SDK: browsers and Node 20+ (pass the `ws` package as `WebSocket` in Node).
export { ParleyClient, Subscription } from './client.js'
export { RestClient } from './rest.js'
export { SessionDocument } from './document.js'
export { StreamAssembler } from './streams.js'
export {
  ParleyError, AuthError, NotFoundError, ForbiddenError, ConflictError, RateLimitError,
  ValidationError, ConnectionError, TimeoutError, errorFromServer
} from './errors.js'
