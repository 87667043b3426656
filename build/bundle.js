// npm run build: five bundles and five on-demand chunks.
// - dist/main.cjs, the image's entry: functions/main.ts with every dependency it needs at start in
//   one file, so that a cold start loads one file (no node_modules at run time); beside it
//   dist/framework.cjs (functions-framework and Express), dist/pg.cjs (node-postgres),
//   dist/cloudevents.cjs (the CloudEvents SDK), dist/jose.cjs (JWT checks of event deliveries) and
//   dist/slack-web-api.cjs (Slack's WebClient),
//   loaded only when first needed (ON_DEMAND below).
// - dist/coffeebuddy.cjs (package.json "main"): the functions alone for
//   `npx functions-framework --target=<name>`; the framework stays external there, since it holds
//   the registry of functions the command-line entry reads.
// - dist/migrate.cjs: the migration Job's entry (functions/migrate.ts), run with migrations/ beside
//   dist/. pg-native is node-postgres's optional native binding, never used here.
// - dist/replay.cjs: the dead-letter replay (functions/replay.ts), run by hand or as a Job.
// - dist/worker-entry.cjs: testing/worker-entry.ts (the production process with the system
//   tests' Slack handler) built as main.cjs is, so that tests measure memory as the image runs;
//   never copied into the image.
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

/**
 * node-fetch's https and zlib, loaded when first used (an https URL, a compressed answer): node-fetch
 * requires both at start, and TLS alone costs a process about 8 MB of memory it never needs when
 * every upstream it reaches is plain http in the cluster (lazy-builtin.js).
 */
const lazyNodeFetchBuiltins = {
  name: 'lazy-node-fetch-builtins',
  setup(build) {
    build.onResolve({ filter: /^(https|zlib)$/ }, (args) =>
      args.importer.includes(path.join('node_modules', 'node-fetch', ''))
        ? { path: args.path, namespace: 'lazy-builtin' }
        : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(path.join(__dirname, 'lazy-builtin.js'))})(${JSON.stringify(args.path)});`,
      resolveDir: __dirname,
    }));
  },
};

/**
 * Packages the image's entry loads only on demand, each bundled into a file of its own beside it:
 * reading and compiling them would cost every cold start, and the `coffeebuddy` entry never uses
 * them (functions-framework's Express app serves only routes that want a parsed body; pg only
 * functions that use the database; cloudevents only a process with K_SINK; jose only the event
 * functions with EVENTING_OIDC_AUDIENCE; @slack/web-api only the first Slack Web API call).
 */
const ON_DEMAND = {
  '@google-cloud/functions-framework': './framework.cjs',
  '@google-cloud/functions-framework/testing': './framework.cjs',
  pg: './pg.cjs',
  cloudevents: './cloudevents.cjs',
  jose: './jose.cjs',
  '@slack/web-api': './slack-web-api.cjs',
};
const onDemandChunks = {
  name: 'on-demand-chunks',
  setup(build) {
    build.onResolve(
      {
        filter:
          /^(@google-cloud\/functions-framework(\/testing)?|pg|cloudevents|jose|@slack\/web-api)$/,
      },
      (args) => ({
        path: ON_DEMAND[args.path],
        external: true,
      }),
    );
  },
};
/** A chunk's source: the packages it stands for, as one module. */
const CHUNKS = {
  'framework.cjs': `module.exports = {
    ...require('@google-cloud/functions-framework'),
    getTestServer: require('@google-cloud/functions-framework/testing').getTestServer,
  };`,
  'pg.cjs': `module.exports = require('pg');`,
  'cloudevents.cjs': `module.exports = require('cloudevents');`,
  // jose is ESM only: esbuild turns it into CommonJS here, so Node never loads ESM at run time.
  'jose.cjs': `module.exports = require('jose');`,
  'slack-web-api.cjs': `module.exports = require('@slack/web-api');`,
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
  plugins: [lazyPushgateway, lazyNodeFetchBuiltins],
};

Promise.all([
  esbuild.build({
    ...common,
    entryPoints: [path.join(root, 'functions', 'main.ts')],
    outfile: path.join(root, 'dist', 'main.cjs'),
    plugins: [...common.plugins, onDemandChunks],
  }),
  ...Object.entries(CHUNKS).map(([file, contents]) =>
    esbuild.build({
      ...common,
      stdin: { contents, resolveDir: root, sourcefile: `build/${file}` },
      outfile: path.join(root, 'dist', file),
    }),
  ),
  esbuild.build({
    ...common,
    entryPoints: [path.join(root, 'functions', 'index.ts')],
    outfile: path.join(root, 'dist', 'coffeebuddy.cjs'),
    external: [...common.external, '@google-cloud/functions-framework'],
  }),
  esbuild.build({
    ...common,
    entryPoints: [path.join(root, 'testing', 'worker-entry.ts')],
    outfile: path.join(root, 'dist', 'worker-entry.cjs'),
    plugins: [...common.plugins, onDemandChunks],
  }),
  esbuild.build({
    ...common,
    entryPoints: [path.join(root, 'functions', 'migrate.ts')],
    outfile: path.join(root, 'dist', 'migrate.cjs'),
  }),
  esbuild.build({
    ...common,
    entryPoints: [path.join(root, 'functions', 'replay.ts')],
    outfile: path.join(root, 'dist', 'replay.cjs'),
  }),
]).catch(() => {
  process.exitCode = 1;
});
