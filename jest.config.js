/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    // isolatedModules: type-checking is `npm run check`'s job; jest only strips types (much faster).
    '^.+\\.ts$': ['ts-jest', { isolatedModules: true, tsconfig: 'tsconfig.json' }],
  },
  // Model loading, PGlite start-up and whole-gallery evaluation take seconds, not milliseconds.
  testTimeout: 120_000,
  // Two cores: onnxruntime's thread pool collapses when test files fight for them.
  maxWorkers: 1,
};
