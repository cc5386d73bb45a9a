// The HTTP side both peers share: `POST /publish {"channel":..,"data":..}` calls
// `deliver(channel, data)` and answers 202; a body that is not JSON gets 400, any other
// request 404.
'use strict';
const http = require('http');

module.exports = function publishServer(deliver) {
  return http.createServer((req, res) => {
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
      deliver(String(msg.channel), msg.data);
      res.writeHead(202, { 'content-type': 'application/json', 'content-length': 2 }).end('{}');
    });
  });
};
