// A mutant the model-based test finds, for ../model-replay.test.ts: there a failure is the goal.
import { MUTANTS } from '../../src/mutants.js';
import { runConformance } from '../../src/index.js';

const mutant = MUTANTS.find((m) => m.id === 'sweep-miscounts')!;
runConformance({ name: `mutant ${mutant.id}`, createStore: (options) => mutant.create(options), model: { runs: 100 } });
