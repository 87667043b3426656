// Bundle-time stand-in for mime-types: the real module, loaded on its first use. Express, type-is
// and send require it at start, but no CoffeeBuddy answer needs a MIME lookup (each sets its own
// Content-Type), and building its tables from mime-db cost about 20 ms of every cold start.
let real;
// A relative path, which the alias does not rewrite: esbuild bundles the real module here, and
// runs it only when load() is first called.
const load = () => (real ??= require('../node_modules/mime-types/index.js'));

module.exports = {
  lookup: (value) => load().lookup(value),
  contentType: (value) => load().contentType(value),
  extension: (value) => load().extension(value),
  charset: (value) => load().charset(value),
  get types() {
    return load().types;
  },
  get extensions() {
    return load().extensions;
  },
  get charsets() {
    return load().charsets;
  },
};
