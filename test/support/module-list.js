// Preloaded (`node -r`) before the production entry by test/system/start-up-modules.test.ts: at
// exit, writes the modules the process loaded (Node's own list, one a line) to MODULE_LIST_FILE.
process.on('exit', () => {
  require('node:fs').writeFileSync(process.env.MODULE_LIST_FILE, process.moduleLoadList.join('\n'));
});
