// Preloaded (`node -r`) before a bundle by the start-up test: on SIGUSR2 it writes the modules
// the process has required so far (builtins included) as one `REQUIRED <json>` line on stderr.
const Module = require('node:module');
const required = new Set();
const original = Module.prototype.require;
Module.prototype.require = function (id) {
  required.add(id.replace(/^node:/, ''));
  return original.apply(this, arguments);
};
process.on('SIGUSR2', () => {
  process.stderr.write(`REQUIRED ${JSON.stringify([...required].sort())}\n`);
});
