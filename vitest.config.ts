import { defineConfig } from 'vitest/config';

// No test may fail because a loaded machine is slow: the per-test and per-hook
// bounds are only there to end a run that hangs, far beyond any slow run.
const HANG_MS = 15 * 60_000;

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts'],
    globalSetup: ['test-fixtures/global-setup.ts'],
    testTimeout: HANG_MS,
    hookTimeout: HANG_MS,
    // Backend suites share one machine with real servers; two files at a time is what 2 cores carry.
    maxWorkers: 2,
    // Only with --coverage (the full run of scripts/test.sh): a printed figure, no threshold.
    coverage: {
      provider: 'v8',
      include: ['packages/core/src/**/*.ts', 'packages/conformance/src/**/*.ts'],
      reporter: ['text-summary'],
    },
  },
});
