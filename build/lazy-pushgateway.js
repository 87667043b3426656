// Bundle-time stand-in for prom-client's Pushgateway: the real class, loaded when one is first
// made. prom-client's index requires it at start, and with it http, https (TLS), zlib and url, which
// cost every cold start; CoffeeBuddy is scraped and never pushes.
let Real;
// A relative path, which the plugin below does not rewrite: esbuild bundles the real module here,
// and runs it only when a Pushgateway is first made.
module.exports = function Pushgateway(...args) {
  Real ??= require('../node_modules/prom-client/lib/pushgateway.js');
  return new Real(...args);
};
