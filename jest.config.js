/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: '<rootDir>/test/helpers/native-realm-environment.js',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    // With isolatedModules (tsconfig.json) ts-jest only strips types: type-checking is `npm run check`'s job.
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  // Model loading, PGlite start-up and whole-gallery evaluation take seconds, not milliseconds.
  testTimeout: 120_000,
  // Two cores: onnxruntime's thread pool collapses when test files fight for them.
  maxWorkers: 1,
};
