// Run at image build time, as the runtime user: starts the server with the command given, asks
// each endpoint once, then stops it. Node writes NODE_COMPILE_CACHE at exit, so every cold start
// after that reads compiled code instead of compiling it again.
// Usage: node warm-compile-cache.js <command> [args…]
const { spawn } = require('node:child_process');
const http = require('node:http');

const PORT = process.env.WARM_PORT || '8080';
const DEADLINE_MS = 30_000;
const [command, ...args] = process.argv.slice(2);
if (!process.env.NODE_COMPILE_CACHE || !command) {
  console.error('usage: NODE_COMPILE_CACHE=<dir> node warm-compile-cache.js <command> [args…]');
  process.exit(2);
}

const get = (path) =>
  new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: PORT, path, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });

const server = spawn(command, args, {
  env: {
    ...process.env,
    PORT,
    LISTEN_HOST: '127.0.0.1',
    VAULT_ADDR: 'http://127.0.0.1:9',
    ORY_URL: 'http://127.0.0.1:9',
  },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const started = Date.now();

(async () => {
  while ((await get('/health/live')) !== 200) {
    if (server.exitCode !== null || Date.now() - started > DEADLINE_MS) {
      console.error('warm-compile-cache: the server did not answer /health/live');
      server.kill('SIGKILL');
      process.exit(1);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await get('/health/ready');
  await get('/metrics');
  await get('/not-found');
  server.kill('SIGTERM');
  server.on('exit', (code) => process.exit(code ?? 1));
})();
