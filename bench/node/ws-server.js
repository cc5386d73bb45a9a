// A plain Node broadcaster on the `ws` library: the simplest thing a team might write
// instead of Pushfleet. Clients connect to `/?channel=<name>`; `POST /publish
// {"channel":..,"data":..}` sends the message as its own text frame to every client of
// that channel. Prints `listening <port>` once ready. Env: PORT (0 = any).
'use strict';
const { WebSocketServer } = require('ws');
const publishServer = require('./http-publish');

const channels = new Map();
const server = publishServer((channel, data) => {
  const text = JSON.stringify({ channel, data });
  for (const ws of channels.get(channel) || []) ws.send(text);
});
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const ch = new URL(req.url, 'http://x').searchParams.get('channel') || '';
  if (!channels.has(ch)) channels.set(ch, new Set());
  channels.get(ch).add(ws);
  ws.on('close', () => channels.get(ch).delete(ws));
  ws.on('error', () => {});
});
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
