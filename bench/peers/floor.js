// The floor for `npm run bench`'s Slack comparison: Node's own http server doing only what a
// signed slash command needs, the body read, Slack's v0 signature checked (HMAC-SHA256 of
// "v0:<timestamp>:<body>", compared in constant time, the timestamp within 5 minutes), and the
// same JSON answer. No routing, parsing, logging or metrics. Loopback only.
const { createHmac, timingSafeEqual } = require('node:crypto');
const http = require('node:http');

const { PORT, SLACK_SIGNING_SECRET, HELP_TEXT } = process.env;
if (!PORT || !SLACK_SIGNING_SECRET || !HELP_TEXT) {
  throw new Error('floor peer: PORT, SLACK_SIGNING_SECRET and HELP_TEXT are required');
}
const MAX_SKEW_SECONDS = 300;
const answer = JSON.stringify({ response_type: 'ephemeral', text: HELP_TEXT });
const refusal = JSON.stringify({ error: 'invalid request' });

function signed(req, body) {
  const timestamp = req.headers['x-slack-request-timestamp'];
  const signature = req.headers['x-slack-signature'];
  if (typeof timestamp !== 'string' || typeof signature !== 'string') return false;
  if (!(Math.abs(Date.now() / 1000 - Number(timestamp)) <= MAX_SKEW_SECONDS)) return false;
  const hmac = createHmac('sha256', SLACK_SIGNING_SECRET);
  hmac.update(`v0:${timestamp}:`);
  hmac.update(body);
  const expected = Buffer.from(`v0=${hmac.digest('hex')}`);
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function send(res, status, body) {
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      if (signed(req, Buffer.concat(chunks))) send(res, 200, answer);
      else send(res, 401, refusal);
    });
  })
  .listen(Number(PORT), '127.0.0.1');
