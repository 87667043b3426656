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
  jest: { projectType: 'custom', config: { ...unit, testTimeout: jestConfig.testTimeout } },
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  // Each mutant runs only the tests that cover it.
  coverageAnalysis: 'perTest',
  // Results kept between runs: only changed code and tests are tested again.
  incremental: true,
  incrementalFile: 'reports/stryker-incremental.json',
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  ignorePatterns: ['dist', 'bench/results', 'reports', 'coverage'],
  tempDirName: '.stryker-tmp',
};
