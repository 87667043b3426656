// npm run build: three bundles.
// - dist/main.cjs, the image's entry: functions/main.ts with functions-framework, Express and every
//   other dependency in one file, so that a cold start loads one file (no node_modules at run time).
// - dist/coffeebuddy.cjs (package.json "main"): the functions alone for
//   `npx functions-framework --target=<name>`; the framework stays external there, since it holds
//   the registry of functions the command-line entry reads.
// - dist/migrate.cjs: the migration Job's entry (functions/migrate.ts), run with migrations/ beside
//   dist/. pg-native is node-postgres's optional native binding, never used here.
// ".cjs" spares Node and the framework their ESM package lookups.
const path = require('node:path');
const esbuild = require('esbuild');

const root = path.resolve(__dirname, '..');

/** prom-client's Pushgateway, loaded on first use (lazy-pushgateway.js). */
const lazyPushgateway = {
  name: 'lazy-pushgateway',
  setup(build) {
    build.onResolve({ filter: /^\.\/lib\/pushgateway$/ }, (args) =>
      args.importer.endsWith(path.join('prom-client', 'index.js'))
        ? { path: path.join(__dirname, 'lazy-pushgateway.js') }
        : undefined,
    );
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // node-fetch 2 needs whatwg-url only where Node lacks URL (whatwg-url.js); mime-types and
  // prom-client's Pushgateway are loaded on first use rather than at start (lazy-*.js).
  alias: {
    'whatwg-url': path.join(__dirname, 'whatwg-url.js'),
    'mime-types': path.join(__dirname, 'lazy-mime-types.js'),
  },
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  logLevel: 'warning',
  external: ['pg-native'],
  plugins: [lazyPushgateway],
};

Promise.all([
  esbuild.build({
    ...common,
    entryPoints: [path.join(root, 'functions', 'main.ts')],
    outfile: path.join(root, 'dist', 'main.cjs'),
  }),
  esbuild.build({
    ...common,
    entryPoints: [path.join(root, 'functions', 'index.ts')],
    outfile: path.join(root, 'dist', 'coffeebuddy.cjs'),
    external: [...common.external, '@google-cloud/functions-framework'],
  }),
  esbuild.build({
    ...common,
    entryPoints: [path.join(root, 'functions', 'migrate.ts')],
    outfile: path.join(root, 'dist', 'migrate.cjs'),
  }),
]).catch(() => {
  process.exitCode = 1;
});
