// A plain Node broadcaster on the `ws` library: the simplest thing a team might write
// instead of Pushfleet. Clients connect to `/?channel=<name>`; `POST /publish
// {"channel":..,"data":..}` sends the message as its own text frame to every client of
// that channel. Prints `listening <port>` once ready. Env: PORT (0 = any).
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const channels = new Map();
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
    const text = JSON.stringify({ channel: msg.channel, data: msg.data });
    for (const ws of channels.get(String(msg.channel)) || []) ws.send(text);
    res.writeHead(202, { 'content-type': 'application/json' }).end('{}');
  });
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
