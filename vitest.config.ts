import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts'],
    globalSetup: ['test-fixtures/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Backend suites share one machine with real servers; two files at a time is what 2 cores carry.
    maxWorkers: 2,
  },
});
