// Two projects: `unit` runs the code in-process, needs no dist/, never starts CoffeeBuddy as a
// process (it may start PostgreSQL, promtool or kubectl) and holds no wall-clock or memory bounds; `system` starts the built entries, real tools and load,
// and holds the few deadline checks, each within SYSTEM_TOLERANCE_MS (test/system/tolerance.ts).
// `npm test` runs both.
const common = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.ts$': ['@swc/jest'],
    // jose 6 is ESM only: jest's CommonJS runtime needs it compiled (the bundle does the same).
    '/node_modules/jose/.+\\.js$': ['@swc/jest', { jsc: { target: 'es2022' } }],
  },
  transformIgnorePatterns: ['/node_modules/(?!jose/)'],
  testMatch: ['**/*.test.ts'],
};

/** @type {import('jest').Config} */
module.exports = {
  testTimeout: 20000,
  projects: [
    {
      ...common,
      displayName: 'unit',
      roots: ['<rootDir>/test'],
      testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/system/'],
    },
    { ...common, displayName: 'system', roots: ['<rootDir>/test/system'] },
  ],
};
