import { defineConfig } from 'vitest/config';

// Used when the example runs on its own (outside the workspace, as scripts/outside-view.sh runs
// it): the suite's races can outlast vitest's 5 s default on a loaded machine. The bounds only
// end a hung run.
export default defineConfig({ test: { include: ['test/*.test.ts'], testTimeout: 900_000, hookTimeout: 900_000 } });
