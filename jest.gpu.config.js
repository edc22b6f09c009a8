/** The GPU tests (test/gpu/), run by `npm run test:gpu` (scripts/test-gpu.ts) where a CUDA GPU is visible. */
const base = require('./jest.config');

module.exports = {
  ...base,
  roots: ['<rootDir>/test/gpu'],
  testPathIgnorePatterns: ['/node_modules/'],
  testTimeout: 600000,
  // One suite at a time on the one GPU.
  maxWorkers: 1,
};
