// Registers the conformance suite once per shipped mutant of one shard. Run by
// ../mutation.test.ts in a vitest of its own: here failures are the goal.
import { MUTANTS } from '../../src/mutants.js';
import { runConformance } from '../../src/index.js';

export function registerShard(shard: number, of: number): void {
  const only = process.env.IDEM_MUTANTS?.split(',').filter(Boolean);
  MUTANTS.forEach((m, i) => {
    if (i % of !== shard || (only && !only.includes(m.id))) return;
    runConformance({
      name: `mutant ${m.id}`,
      createStore: (options) => m.create(options),
      createSharedStores: async (options, count) => {
        const backend = new Map();
        return Array.from({ length: count }, () => m.create({ ...options, backend }));
      },
      model: { runs: 30 },
    });
  });
}
