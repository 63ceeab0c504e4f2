import { defineConfig } from 'vitest/config';

// The conformance suite races 64 claimers and 4 processes: on a loaded machine a test
// can outlast vitest's 5 s default. Bounds here only end a hung run, as in the repo.
export default defineConfig({ test: { testTimeout: 900_000, hookTimeout: 900_000 } });
