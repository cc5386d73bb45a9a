// Socket.IO 4 with its Redis adapter, as a team would deploy it for the same job as
// Pushfleet: every client joins the room named by its `channel` query parameter;
// `POST /publish {"channel":..,"data":..}` emits `data` to that room (through the
// Redis adapter, so every node of a fleet would get it). One message, one emit: Socket.IO
// has no merging. Prints `listening <port>` once ready. Env: REDIS_URL, PORT (0 = any).
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

async function main() {
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/publish') {
      res.writeHead(404).end();
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let msg;
      try {
        msg = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400).end();
        return;
      }
      io.to(String(msg.channel)).emit('message', msg.data);
      res.writeHead(202, { 'content-type': 'application/json' }).end('{}');
    });
  });
  const io = new Server(server, {
    transports: ['websocket'],
    serveClient: false,
    adapter: createAdapter(pub, sub),
  });
  io.on('connection', (socket) => {
    const ch = socket.handshake.query.channel;
    if (typeof ch === 'string' && ch) socket.join(ch);
  });
  server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
    console.log(`listening ${server.address().port}`);
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
