// A stock Yjs client (yjs + y-websocket + ws from client_js/node_modules, unmodified) driven by
// JSON lines on stdin; it reports what it sees as JSON lines on stdout. The Python tests start one
// process per client, so nothing is shared in-process (and BroadcastChannel is disabled).
//
// stdin:  {"op": "connect", "url", "room", "token", "presence"?}
//         {"op": "insert", "index"?, "text"}        notes (Y.Text); index defaults to the end
//         {"op": "delete", "index", "length"}
//         {"op": "annotate", "id", "fields"}        annotations.set(id, new Y.Map(fields))
//         {"op": "set", "id", "key", "value"}       annotations.get(id).set(key, value)
//         {"op": "presence", "state"}               awareness.setLocalState(state)
//         {"op": "disconnect"} | {"op": "exit"}
// stdout: {"ev": "doc", notes, annotations} after every change, {"ev": "presence", others}
//         after every awareness change, {"ev": "synced"}, {"ev": "status", status},
//         {"ev": "denied", reason}, {"ev": "closed", code}
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

const require = createRequire(join(process.env.PARLEY_CLIENT_JS, 'package.json'))
const Y = require('yjs')
const { WebsocketProvider } = require('y-websocket')
const WebSocket = require('ws')

const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n')

// y-websocket reports a refused message ("permission denied") with console.warn
console.warn = (...args) => {
  const text = args.join(' ')
  const at = text.indexOf('\n')
  emit({ ev: 'denied', reason: at >= 0 ? text.slice(at + 1) : text })
}

const doc = new Y.Doc()
const notes = doc.getText('notes')
const annotations = doc.getMap('annotations')
let provider = null

const others = () => {
  const out = {}
  if (provider === null) return out
  provider.awareness.getStates().forEach((state, clientID) => {
    if (clientID !== doc.clientID) out[clientID] = state
  })
  return out
}

doc.on('update', () => emit({ ev: 'doc', notes: notes.toString(), annotations: annotations.toJSON() }))

const commands = {
  connect ({ url, room, token, presence }) {
    provider = new WebsocketProvider(url, room, doc, {
      params: { token },
      WebSocketPolyfill: WebSocket,
      disableBc: true,
      maxBackoffTime: 200
    })
    provider.awareness.setLocalState(presence ?? null)
    provider.awareness.on('change', () => emit({ ev: 'presence', others: others() }))
    provider.on('sync', (synced) => {
      if (synced) emit({ ev: 'synced', others: others(), notes: notes.toString() })
    })
    provider.on('status', ({ status }) => emit({ ev: 'status', status }))
    provider.on('closed', ({ code }) => emit({ ev: 'closed', code }))
    provider.on('connection-close', (event) => emit({ ev: 'connection-close', code: event ? event.code : null }))
  },
  insert ({ index, text }) { notes.insert(index ?? notes.length, text) },
  delete ({ index, length }) { notes.delete(index, length) },
  annotate ({ id, fields }) { annotations.set(id, new Y.Map(Object.entries(fields))) },
  set ({ id, key, value }) { annotations.get(id).set(key, value) },
  presence ({ state }) { provider.awareness.setLocalState(state) },
  disconnect () { provider.disconnect() },
  exit () {
    if (provider !== null) provider.destroy()
    process.exit(0)
  }
}

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  const command = JSON.parse(line)
  try {
    commands[command.op](command)
    emit({ ev: 'done', op: command.op })
  } catch (err) {
    emit({ ev: 'error', op: command.op, message: String(err) })
  }
})
lines.on('close', () => commands.exit())
