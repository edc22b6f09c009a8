/** Jest runs the TypeScript sources through ts-jest; the Python oracles run through /usr/bin/python3. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // The GPU tests run through `npm run test:gpu`.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/gpu/'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: { types: ['node', 'jest'], esModuleInterop: true } }] },
  testTimeout: 120000,
  // Two suites at a time: much of a suite's time is spent waiting on the processes it starts (the
  // CLI, training workers, Python's start-up), so on two cores a second suite keeps both busy.
  maxWorkers: 2,
  testSequencer: '<rootDir>/test/sequencer.js',
};
