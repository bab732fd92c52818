// The node-ws target of bench/fanout_vs_article.py: a broadcast server on npm `ws`.
//
// The broadcast of ws's README ("Server broadcast", sender included), for text frames
// (the lab sends nothing else): every text message a client sends is sent back, as it
// came (the received Buffer, not decoded again), to every open client. No message size
// limit (maxPayload 0), no permessage-deflate (ws's default for servers; the lab's client
// does not offer it anyway). ws uses `bufferutil` (native masking) when it installed;
// the log's first line says whether it did.
//
//   node bench/node_ws/server.js --port 8003
//
// 127.0.0.1 only. SIGTERM or SIGINT: stop listening, drop the clients, exit.
'use strict';

const { WebSocketServer, WebSocket } = require('ws');

function parsePort(argv) {
  const at = argv.indexOf('--port');
  const port = at >= 0 ? Number(argv[at + 1]) : 8003;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error(`usage: node server.js --port PORT (got ${argv.slice(2).join(' ')})`);
    process.exit(2);
  }
  return port;
}

let bufferutil = 'no';
try {
  require('bufferutil');
  bufferutil = 'yes';
} catch {
  // optional: ws masks and unmasks in JavaScript without it
}

const port = parsePort(process.argv);
const wss = new WebSocketServer({ host: '127.0.0.1', port, maxPayload: 0 });

wss.on('connection', (ws) => {
  ws.on('error', console.error);
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    for (const client of wss.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: false });
    }
  });
});

wss.on('listening', () => {
  console.log(`node ${process.version}, ws, bufferutil ${bufferutil}: listening on 127.0.0.1:${port}`);
});

function stop() {
  for (const client of wss.clients) client.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
