// Bundle-time stand-in for one of Node's modules (node-fetch's https and zlib): the real module,
// required the first time one of its members is read. Only `get` is trapped: node-fetch asks
// `'default' in` the module when it loads, which must not load it.
module.exports = function lazyBuiltin(name) {
  let real;
  return new Proxy(
    {},
    {
      get: (_target, key) => {
        real ??= require(`node:${name}`);
        return real[key];
      },
    },
  );
};
