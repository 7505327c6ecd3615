// Node's aedes broker with its defaults, for bench/run.py: MQTT on 127.0.0.1:PORT and,
// when WS_PORT is given, MQTT over WebSockets on 127.0.0.1:WS_PORT.
//
//   node bench/js/aedes.js PORT [WS_PORT]
//
// Prints "ready" once every listener is bound (bench/brokers.py waits for the ports)
// and exits on SIGTERM or SIGINT.
import { createServer as createHttpServer } from 'node:http'
import { createServer } from 'node:net'
import { Aedes } from 'aedes'
import { WebSocketServer, createWebSocketStream } from 'ws'

const HOST = '127.0.0.1'
const [port, wsPort] = process.argv.slice(2).map(Number)
if (!port) {
  console.error('usage: node aedes.js PORT [WS_PORT]')
  process.exit(2)
}

const aedes = await Aedes.createBroker()
const servers = [createServer(aedes.handle)]
if (wsPort) {
  const http = createHttpServer()
  new WebSocketServer({ server: http }).on('connection', (socket, req) => {
    aedes.handle(createWebSocketStream(socket), req)
  })
  servers.push(http)
}
await Promise.all(servers.map((s, i) =>
  new Promise(resolve => s.listen(i ? wsPort : port, HOST, resolve))))
console.log(`ready aedes ${process.versions.node}`)

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    for (const s of servers) s.close()
    aedes.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  })
}
