// StrykerJS: mutation testing of lib/ and functions/ against the unit project (`npm run mutate`,
// or scoped: `npm run mutate -- --mutate lib/http/body.ts`). docs/development.md has the scores.
import jestConfig from './jest.config.js';

const unit = jestConfig.projects.find((project) => project.displayName === 'unit');

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  mutate: [
    'lib/**/*.ts',
    'functions/**/*.ts',
    // Process entries: only the system suite runs them, as spawned processes.
    '!functions/main.ts',
    '!functions/index.ts',
    '!functions/migrate.ts',
  ],
  testRunner: 'jest',
  // The unit project only: the system suite spawns dist/, which mutants never reach.
  jest: {
    projectType: 'custom',
    config: {
      ...unit,
      // The jest runner picks the test files of the initial run and of each mutant with
      // --findRelatedTests, which follows imports only through files under `roots`, and adds to
      // the unit project's test/ only the mutated files' folders. A test reaching the file
      // through a module in another folder (test/slack.test.ts reaching lib/http/parse.ts by
      // testing/app.ts and functions/slack/index.ts) was then never run: its mutants read
      // "NoCoverage" or "Survived" though it kills them. With every source folder in `roots`,
      // the related tests are all the tests that import the file, directly or not. (Results
      // in reports/stryker-incremental.json from before this are reused as they were: delete
      // it, or run with --force, once.)
      roots: [...unit.roots, '<rootDir>/lib', '<rootDir>/functions', '<rootDir>/testing'],
      testTimeout: jestConfig.testTimeout,
    },
  },
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  // Each mutant runs only the tests that cover it.
  coverageAnalysis: 'perTest',
  // The initial run takes every test that imports the mutated files (see `roots`): for a file
  // most of the app imports, on a shared machine, past the default 5 minutes.
  dryRunTimeoutMinutes: 30,
  // Results kept between runs: only changed code and tests are tested again.
  incremental: true,
  incrementalFile: 'reports/stryker-incremental.json',
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  ignorePatterns: ['dist', 'bench/results', 'reports', 'coverage'],
  tempDirName: '.stryker-tmp',
};
