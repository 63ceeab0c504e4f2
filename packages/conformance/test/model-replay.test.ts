// A model-based failure names its seed and the command that replays it, and
// that command replays the same counterexample. Run in a vitest of its own
// (model-replay/) against a mutant the model finds, with a random seed.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

interface Report {
  testResults: Array<{ assertionResults: Array<{ title: string; status: string; failureMessages: string[] }> }>;
}

const out = mkdtempSync(join(tmpdir(), 'idem-model-replay-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** The model test's failure message, run with `env` (IDEM_MODEL_* removed from ours first). */
async function modelFailure(env: Record<string, string>): Promise<string> {
  const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');
  const config = fileURLToPath(new URL('./model-replay/vitest.config.ts', import.meta.url));
  const report = join(out, `report-${Object.keys(env).length}.json`); // one report per run: the runs differ in their env
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('IDEM_MODEL_')));
  await new Promise<void>((resolve, reject) => {
    const args = [vitest, 'run', '--config', config, '-t', 'agree with the model', '--reporter=json', `--outputFile=${report}`];
    const child = spawn(process.execPath, args, { stdio: 'ignore', env: { ...inherited, ...env } });
    child.on('error', reject);
    child.on('exit', () => resolve());
  });
  const results = (JSON.parse(readFileSync(report, 'utf8')) as Report).testResults.flatMap((f) => f.assertionResults);
  const model = results.find((r) => r.title === 'every answer and every stored record agree with the model');
  expect(model?.status, 'the model test found the mutant').toBe('failed');
  return model!.failureMessages.join('\n');
}

it('a model failure names its seed and path, and replaying them fails the same way', async () => {
  const first = await modelFailure({});
  const named =
    /replay it with\n {2}IDEM_MODEL_SEED=(-?\d+) IDEM_MODEL_PATH=(\S+)(?: IDEM_MODEL_REPLAY='([^']*)')? vitest run (\S+) -t 'agree with the model'/.exec(first);
  expect(named, first.slice(0, 500)).not.toBeNull();
  const [, seed, path, replay, file] = named!;
  expect(file).toMatch(/mutant\.replay\.ts$/);
  const again = await modelFailure({ IDEM_MODEL_SEED: seed!, IDEM_MODEL_PATH: path!, ...(replay ? { IDEM_MODEL_REPLAY: replay } : {}) });
  expect(again).toContain(`IDEM_MODEL_SEED=${seed} `);
  const counterexample = (text: string) => /Counterexample: (.*)/.exec(text)?.[1];
  expect(counterexample(again), 'the same counterexample').toBe(counterexample(first));
}, 300_000);
