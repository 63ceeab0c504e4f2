import { defineConfig } from 'vitest/config';

// Only ../model-replay.test.ts runs this config; the bound ends a hung run.
export default defineConfig({ test: { root: import.meta.dirname, include: ['*.replay.ts'], testTimeout: 120_000 } });
