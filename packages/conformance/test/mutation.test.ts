// The suite's self-test: the whole conformance suite (model-based part
// included) runs against every shipped mutant, and every mutant must fail it.
// Prints the score (killed/total); anything below 100 % fails. The mutants
// are in-memory drivers with an injected clock, so this needs no server.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { MUTANTS } from '../src/mutants.js';

interface Report {
  testResults: Array<{ assertionResults: Array<{ ancestorTitles: string[]; title: string; status: string }> }>;
}

const here = dirname(fileURLToPath(import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'idem-mutants-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

it(`the suite fails every one of the ${MUTANTS.length} shipped mutants`, async () => {
  const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');
  const report = join(out, 'report.json');
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, [vitest, 'run', '--config', join(here, 'mutants', 'vitest.config.ts'), '--reporter=json', `--outputFile=${report}`], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, IDEM_MODEL_SEED: process.env.IDEM_MODEL_SEED ?? '20261123' },
    });
    child.on('error', reject);
    child.on('exit', resolve);
  });
  if (process.env.IDEM_MUTATION_REPORT) copyFileSync(report, process.env.IDEM_MUTATION_REPORT);
  const results = (JSON.parse(readFileSync(report, 'utf8')) as Report).testResults.flatMap((f) => f.assertionResults);
  const killedBy = new Map<string, string[]>(MUTANTS.map((m) => [m.id, []]));
  for (const r of results) {
    const id = /^idem conformance: mutant (.+)$/.exec(r.ancestorTitles[0] ?? '')?.[1];
    if (id !== undefined && r.status === 'failed') killedBy.get(id)?.push(r.title);
  }
  // IDEM_MUTANTS=a,b runs only those (to check a new test against a mutant).
  const only = process.env.IDEM_MUTANTS?.split(',').filter(Boolean);
  const ran = MUTANTS.filter((m) => !only || only.includes(m.id));
  const survivors = ran.filter((m) => killedBy.get(m.id)!.length === 0);
  const killed = ran.length - survivors.length;
  console.log(
    [
      `mutation score: ${killed}/${ran.length} killed (${((100 * killed) / ran.length).toFixed(1)} %)`,
      ...ran.map(
        (m) => `  ${killedBy.get(m.id)!.length > 0 ? 'killed  ' : 'SURVIVED'} ${m.category}/${m.id} (${killedBy.get(m.id)!.length} tests): ${m.fault}`,
      ),
    ].join('\n'),
  );
  expect(code, 'the mutants run ends with failures').toBe(1);
  expect(survivors.map((m) => `${m.id}: ${m.fault}`)).toEqual([]);
}, 600_000);
