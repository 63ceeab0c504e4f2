import { defineConfig } from 'vitest/config';

// Only ../unconditional-delete.test.ts runs this config; the bound ends a hung run.
export default defineConfig({ test: { root: import.meta.dirname, include: ['*.broken.ts'], testTimeout: 120_000 } });
