// npm run build: bundles the functions into dist/coffeebuddy.cjs, the one file the image loads.
// One file loads faster than hundreds; ".cjs" spares functions-framework its ESM package lookup.
const path = require('node:path');
const esbuild = require('esbuild');

const root = path.resolve(__dirname, '..');

esbuild
  .build({
    entryPoints: [path.join(root, 'functions', 'index.ts')],
    outfile: path.join(root, 'dist', 'coffeebuddy.cjs'),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // The framework must stay one shared module: it holds the registry of functions.
    external: ['@google-cloud/functions-framework'],
    alias: { 'whatwg-url': path.join(__dirname, 'whatwg-url.js') },
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'linked',
    logLevel: 'warning',
  })
  .catch(() => {
    process.exitCode = 1;
  });
