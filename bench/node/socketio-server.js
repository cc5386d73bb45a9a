// Socket.IO 4 with its Redis adapter, as a team would deploy it for the same job as
// Pushfleet: every client joins the room named by its `channel` query parameter. Messages
// come from Redis (what `@socket.io/redis-emitter` publishes, through the adapter, as every
// node of a fleet would get them) or from `POST /publish {"channel":..,"data":..}`, which
// emits `data` to that room. One message, one emit: Socket.IO has no merging. Prints
// `listening <port>` once ready. Env: REDIS_URL, PORT (0 = any).
'use strict';
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');
const publishServer = require('./http-publish');

async function main() {
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const server = publishServer((channel, data) => io.to(channel).emit('message', data));
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
