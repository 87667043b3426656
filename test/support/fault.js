// Preloaded (`node -r`) before the production entry by the lifecycle tests: on SIGUSR2 it raises
// a fault outside any request, of the kind FAULT_KIND names (unhandled_rejection by default).
process.on('SIGUSR2', () => {
  setImmediate(() => {
    if (process.env.FAULT_KIND === 'uncaught_exception') throw new Error('injected fault');
    void Promise.reject(new Error('injected fault'));
  });
});
