// The mutation self-test's own vitest run: the suite against every mutant, in
// two files (one per core). A hung mutant fails by the per-test timeout.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: import.meta.dirname,
    include: ['shard-*.mutants.ts'],
    testTimeout: 20_000,
    maxWorkers: 2,
  },
});
