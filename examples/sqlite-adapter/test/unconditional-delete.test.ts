// The fault the forced interleavings exist for: on a synchronous backend every
// rival ends before a sweep scans, so only the suite's pause between sweep's
// read and its delete can catch a delete that ignores what it read. The suite
// runs against the broken example in a vitest of its own and must fail there.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

interface Report {
  testResults: Array<{ assertionResults: Array<{ ancestorTitles: string[]; title: string; status: string }> }>;
}

const out = mkdtempSync(join(tmpdir(), 'idem-sqlite-broken-report-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

it('an unconditional sweep delete fails the suite, in every forced sweep window', async () => {
  const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');
  const config = fileURLToPath(new URL('./broken/vitest.config.ts', import.meta.url));
  const report = join(out, 'report.json');
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, [vitest, 'run', '--config', config, '--reporter=json', `--outputFile=${report}`], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', resolve);
  });
  const results = (JSON.parse(readFileSync(report, 'utf8')) as Report).testResults.flatMap((f) => f.assertionResults);
  const failed = results.filter((r) => r.status === 'failed').map((r) => `${r.ancestorTitles.at(-1)}: ${r.title}`);
  expect(code).toBe(1);
  expect(failed).toEqual(
    expect.arrayContaining([
      'between sweep reading a record and deleting it: a takeover of the dead lease: the new owner keeps its record',
      'between sweep reading a record and deleting it: a renewal of the dead lease by its owner: the renewed record stays',
      'between sweep reading a record and deleting it: a completion by the late owner: the result stays',
      'between sweep reading a record and deleting it: a new claim of an expired record: the new claim stays',
    ]),
  );
}, 300_000);
