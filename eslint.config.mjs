import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'node_modules/', 'reports/', '.stryker-tmp/'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      // A leading underscore marks a parameter a signature needs but the body does not use.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // Layers run one way: lib/ is shared by the functions and imports nothing above it.
    files: ['lib/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/functions', '**/functions/**', '**/testing/**', '**/test/**'],
              message: 'lib/ must not import from functions/, testing/ or test/.',
            },
          ],
        },
      ],
    },
  },
  {
    // Inside lib/, the generic layers (HTTP, CloudEvents, clients, settings, metrics) never import
    // the Slack-specific one: lib/slack builds on them.
    files: [
      'lib/*.ts',
      'lib/http/**/*.ts',
      'lib/eventing/**/*.ts',
      'lib/clients/**/*.ts',
      'lib/config/**/*.ts',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/functions', '**/functions/**', '**/testing/**', '**/test/**'],
              message: 'lib/ must not import from functions/, testing/ or test/.',
            },
            {
              group: ['**/slack', '**/slack/**', './slack', './slack/**'],
              message:
                'a generic layer of lib/ must not import lib/slack: the Slack layer builds on it.',
            },
          ],
        },
      ],
    },
  },
  {
    // A feature builds on the runtime (lib/) only: never on an entry, the tests or another feature.
    files: ['functions/features/**/*.ts'],
    ignores: ['functions/features/index.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!\\.\\./\\.\\./lib/)\\.\\.?/',
              message:
                'a feature imports only from lib/ (the runtime), never functions/ or another feature.',
            },
          ],
        },
      ],
    },
  },
  {
    // Tests and the benchmark read untyped data (response bodies, YAML, tool output).
    files: ['test/**/*.ts', 'testing/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: globals.node },
  },
  {
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
