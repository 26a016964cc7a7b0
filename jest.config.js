/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: '<rootDir>/test/helpers/native-realm-environment.js',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // Brings up what the suites need (../shared models and data, Debian's Chromium, a private PostgreSQL
  // 15 + pgvector cluster, whose URL it puts in OMPF_TEST_DATABASE_URL), or fails at once saying what to do.
  globalSetup: '<rootDir>/test/setup/global-setup.ts',
  globalTeardown: '<rootDir>/test/setup/global-teardown.ts',
  transform: {
    // With isolatedModules (tsconfig.json) ts-jest only strips types: type-checking is `npm run check`'s job.
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  // Model loading, PGlite start-up and whole-gallery evaluation take seconds, not milliseconds.
  testTimeout: 120_000,
  // Two cores: onnxruntime's thread pool collapses when test files fight for them.
  maxWorkers: 1,
};
