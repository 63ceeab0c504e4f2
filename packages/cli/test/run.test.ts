import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '@idem/test-fixtures';
import { afterAll, describe, expect, it } from 'vitest';
import { freshKey, freshStore, heldOwner, idem, lines, RUN_REPORT_KEYS, sleep, start, until } from './helpers.js';

// Commands append a line to a file: executions are counted, not just outcomes.
const work = tempDir('idem-cli-work-');
const counter = (name: string) => join(work, name);
/** sh -c SCRIPT with $1 = the counter file. */
const sh = (script: string, file: string) => ['sh', '-c', script, 'sh', file];

// Orphans of kill -9 tests write their pid here; cleaned up at the end.
const orphans = join(work, 'orphans');
afterAll(() => {
  for (const pid of lines(orphans)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }
});

describe('idem run', () => {
  it('runs the command once, then skips it with the JSON report', async () => {
    const store = freshStore();
    const key = freshKey('once');
    const file = counter(key);
    const first = await idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo ran >> "$1"', file)]);
    expect(first.code).toBe(0);
    expect(Object.keys(first.json).sort()).toEqual(RUN_REPORT_KEYS);
    expect(first.json).toMatchObject({
      status: 'succeeded',
      key,
      exit_code: 0,
      outcome: 'acquired',
      fence: 1,
      attempt: 1,
      skipped_by_run_id: null,
      error: null,
    });
    expect(first.json.store).toMatch(/^lmdb:\/\/\//);
    expect(first.json.run_id).toMatch(/^[0-9a-f-]{36}$/);

    const again = await idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo ran >> "$1"', file)]);
    expect(again.code).toBe(0);
    expect(Object.keys(again.json).sort()).toEqual(RUN_REPORT_KEYS);
    expect(again.json).toMatchObject({
      status: 'skipped_idempotent',
      key,
      exit_code: 0,
      skipped_by_run_id: first.json.run_id,
      previous_status: 'succeeded',
      outcome: null,
    });
    expect(again.json.run_id).not.toBe(first.json.run_id);
    expect(again.stderr).toContain('skipped');
    expect(lines(file)).toEqual(['ran']);

    const custom = await idem(['run', '--key', key, '--store', store, '--skip-exit-code', '3', '--json', '--', 'true']);
    expect(custom.code).toBe(3);
    expect(custom.json).toMatchObject({ status: 'skipped_idempotent', exit_code: 3 });
    expect(first.json.timings).toEqual({
      open_ms: expect.any(Number),
      claim_ms: expect.any(Number),
      command_ms: expect.any(Number),
      finish_ms: expect.any(Number),
      total_ms: expect.any(Number),
    });
  });

  it('concurrent runs with one key execute the command exactly once', async () => {
    const store = freshStore();
    const key = freshKey('race');
    const file = counter(key);
    const runs = await Promise.all(
      Array.from({ length: 4 }, () => idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo ran >> "$1"; sleep 1', file)])),
    );
    expect(lines(file)).toEqual(['ran']);
    const winners = runs.filter((r) => r.json.status === 'succeeded');
    expect(winners).toHaveLength(1);
    for (const loser of runs.filter((r) => r.json.status !== 'succeeded')) {
      expect(loser.code).toBe(0);
      // skipped_in_flight while it ran; skipped_idempotent if a loser started after it finished.
      expect(['skipped_in_flight', 'skipped_idempotent']).toContain(loser.json.status);
      expect(loser.json.skipped_by_run_id).toBe(winners[0]!.json.run_id);
    }
  });

  it("--on-in-flight wait reuses the owner's outcome; fail exits 75", async () => {
    const store = freshStore();
    const key = freshKey('wait');
    const file = counter(key);
    const { owner, release } = await heldOwner(store, key, file);
    const waiting = idem(['run', '--key', key, '--store', store, '--on-in-flight', 'wait', '--json', '--', ...sh('echo waiter >> "$1"', file)]);
    const failer = await idem(['run', '--key', key, '--store', store, '--on-in-flight', 'fail', '--json', '--', ...sh('echo failer >> "$1"', file)]);
    release();
    const [first, waiter] = await Promise.all([owner.done, waiting]);
    expect(first.json.status).toBe('succeeded');
    expect(failer.code).toBe(75);
    expect(failer.json).toMatchObject({ status: 'skipped_in_flight', exit_code: 75, skipped_by_run_id: first.json.run_id, error: { code: 'IN_FLIGHT' } });
    expect(failer.stderr).toMatch(/^idem: IN_FLIGHT: /m);
    expect(waiter.code).toBe(0);
    expect(waiter.json).toMatchObject({ status: 'skipped_idempotent', skipped_by_run_id: first.json.run_id });
    expect(lines(file)).toEqual(['ran']);
  });

  it('--on-in-flight wait says whom it waits for (a log line when stderr is not a terminal); --quiet says nothing', async () => {
    const store = freshStore();
    const key = freshKey('waitline');
    const file = counter(key);
    const { owner, release } = await heldOwner(store, key, file);
    const waiter = start(['run', '--key', key, '--store', store, '--on-in-flight', 'wait', '--', 'true']);
    const quiet = start(['run', '--key', key, '--store', store, '--on-in-flight', 'wait', '--quiet', '--', 'true']);
    let said = '';
    waiter.child.stderr!.on('data', (d: string) => (said += d));
    // Released only once the waiter has said it waits: the line is seen, not hoped for.
    await until(() => /idem: waiting \d+s for /.test(said), 60_000, 'the waiting line');
    release();
    const [first, waited, silent] = await Promise.all([owner.done, waiter.done, quiet.done]);
    expect(waited.stderr).toMatch(
      new RegExp(`idem: waiting \\d+s for .+ pid ${owner.child.pid} \\(sh\\), idem .+ \\(run ${first.json.run_id}, lease until \\d{4}-`),
    );
    // One line per holder, not one per poll, in a log.
    expect(waited.stderr.match(/idem: waiting/g)).toHaveLength(1);
    expect(waited.stderr).not.toContain('\r');
    expect(silent.stderr).toBe('');
  });

  it('failure then retry under --dedup-on success (default): the key is retried until it succeeds', async () => {
    const store = freshStore();
    const key = freshKey('retry');
    const file = counter(key);
    const fail = await idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo fail >> "$1"; exit 3', file)]);
    expect(fail.code).toBe(3);
    expect(fail.json).toMatchObject({ status: 'failed', exit_code: 3, outcome: 'acquired', attempt: 1 });
    expect(fail.stderr).toContain('exit code 3');
    const status = await idem(['status', key, '--store', store, '--json']);
    expect(status.json.record).toMatchObject({ status: 'failed', error: 'CommandFailed: exit code 3' });

    const again = await idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo fail >> "$1"; exit 4', file)]);
    expect(again.code).toBe(4);
    expect(again.json).toMatchObject({ status: 'failed', exit_code: 4, attempt: 2, fence: 2 });
    const ok = await idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo ok >> "$1"', file)]);
    expect(ok.json).toMatchObject({ status: 'succeeded', exit_code: 0, attempt: 3, fence: 3 });
    const skip = await idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo again >> "$1"', file)]);
    expect(skip.json).toMatchObject({ status: 'skipped_idempotent', skipped_by_run_id: ok.json.run_id });
    expect(lines(file)).toEqual(['fail', 'fail', 'ok']);
  });

  it('failure then retry under --dedup-on any: the failure is final', async () => {
    const store = freshStore();
    const key = freshKey('any');
    const file = counter(key);
    const fail = await idem(['run', '--key', key, '--store', store, '--dedup-on', 'any', '--json', '--', ...sh('echo fail >> "$1"; exit 3', file)]);
    expect(fail.code).toBe(3);
    expect(fail.json.status).toBe('failed');
    const skip = await idem(['run', '--key', key, '--store', store, '--dedup-on', 'any', '--json', '--', ...sh('echo again >> "$1"', file)]);
    expect(skip.code).toBe(0);
    expect(skip.json).toMatchObject({ status: 'skipped_idempotent', previous_status: 'failed', skipped_by_run_id: fail.json.run_id });
    const coded = await idem(['run', '--key', key, '--store', store, '--dedup-on', 'any', '--skip-exit-code', '9', '--json', '--', 'true']);
    expect(coded.code).toBe(9);
    expect(lines(file)).toEqual(['fail']);
    // The policy is the caller's: under "success" the same failed record is retried.
    const retry = await idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo retried >> "$1"', file)]);
    expect(retry.json).toMatchObject({ status: 'succeeded', attempt: 2 });
    expect(lines(file)).toEqual(['fail', 'retried']);
  });

  // A 10 s lease: on a loaded machine the early run must still find it live (no speed is asserted).
  it('kill -9 of idem run: the next run adopts after the lease', async () => {
    const store = freshStore();
    const key = freshKey('crash');
    const file = counter(key);
    const victim = start([
      'run',
      '--key',
      key,
      '--store',
      store,
      '--lease',
      '10s',
      '--json',
      '--',
      'sh',
      '-c',
      'echo $$ >> "$2"; echo crashed >> "$1"; sleep 30',
      'sh',
      file,
      orphans,
    ]);
    await until(() => lines(file).length === 1, 15_000, 'the first run to start');
    victim.child.kill('SIGKILL');
    await victim.exited;

    // Its lease (10s, renewed every 3.3s) is still live: nobody may take over yet.
    const early = await idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo early >> "$1"', file)]);
    expect(early.json.status).toBe('skipped_in_flight');
    const owner = (await idem(['status', key, '--store', store, '--json'])).json.record;
    expect(owner).toMatchObject({ status: 'in_flight', fence: 1 });
    expect(early.json.skipped_by_run_id).toBe(owner.run_id);

    await sleep(Date.parse(owner.lease_expires_at) - Date.now() + 50);
    const late = await idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo adopted >> "$1"', file)]);
    expect(late.code).toBe(0);
    expect(late.json).toMatchObject({ status: 'succeeded', outcome: 'adopted', fence: 2, attempt: 2 });
    expect(late.stderr).toContain(`from run ${owner.run_id}`);
    expect(lines(file)).toEqual(['crashed', 'adopted']);
  });

  it('a stalled original cannot finish after another run adopted its key (exit 76, LEASE_LOST)', async () => {
    const store = freshStore();
    const key = freshKey('zombie');
    const file = counter(key);
    const zombie = start(['run', '--key', key, '--store', store, '--lease', '1s', '--json', '--', ...sh('echo zombie >> "$1"; sleep 1.5', file)]);
    // Stopped right after its command starts, so idem is not inside a write transaction
    // (a stopped process would hold LMDB's writer lock); the first heartbeat is ~333ms later.
    await until(() => lines(file).length === 1, 15_000, 'the first run to start', 2);
    // SIGSTOP freezes idem (a GC pause, a suspended VM): its heartbeat stops, its command runs on.
    zombie.child.kill('SIGSTOP');
    try {
      await sleep(1300);
      const adopter = await idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo adopter >> "$1"', file)]);
      expect(adopter.json).toMatchObject({ status: 'succeeded', outcome: 'adopted', fence: 2 });
      zombie.child.kill('SIGCONT');
      const late = await zombie.done;
      expect(late.code).toBe(76);
      expect(late.json).toMatchObject({ status: 'error', exit_code: 76, error: { code: 'LEASE_LOST' } });
      expect(late.stderr).toMatch(/^idem: LEASE_LOST: /m);
      const record = (await idem(['status', key, '--store', store, '--json'])).json.record;
      expect(record).toMatchObject({ status: 'succeeded', run_id: adopter.json.run_id, fence: 2 });
    } finally {
      zombie.child.kill('SIGCONT');
    }
  });

  it('forwards SIGTERM to the command and releases the claim; the next run executes at once', async () => {
    const store = freshStore();
    const key = freshKey('signal');
    const file = counter(key);
    const run = start(['run', '--key', key, '--store', store, '--json', '--', 'sh', '-c', 'echo started >> "$1"; exec sleep 20', 'sh', file]);
    await until(() => lines(file).length === 1, 15_000, 'the command to start');
    run.child.kill('SIGTERM');
    const r = await run.done;
    expect(r.code).toBe(143);
    expect(r.json).toMatchObject({ status: 'cancelled', exit_code: 143, signal: 'SIGTERM' });
    const next = await idem(['run', '--key', key, '--store', store, '--json', '--', ...sh('echo next >> "$1"', file)]);
    expect(next.json).toMatchObject({ status: 'succeeded', outcome: 'acquired', fence: 2 });
    expect(lines(file)).toEqual(['started', 'next']);
  });

  it('a command killed by a signal idem did not send is a failure with 128+N', async () => {
    const store = freshStore();
    const key = freshKey('killed');
    const r = await idem(['run', '--key', key, '--store', store, '--json', '--', 'sh', '-c', 'kill -9 $$']);
    expect(r.code).toBe(137);
    expect(r.json).toMatchObject({ status: 'failed', exit_code: 137, signal: 'SIGKILL' });
    const status = await idem(['status', key, '--store', store, '--json']);
    expect(status.json.record).toMatchObject({ status: 'failed', error: 'CommandFailed: killed by SIGKILL' });
  });

  it('a command that cannot start does not claim the key (127 / 126)', async () => {
    const store = freshStore();
    const key = freshKey('spawn');
    const missing = await idem(['run', '--key', key, '--store', store, '--dedup-on', 'any', '--', 'idem-no-such-command']);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toBe('idem: SPAWN_FAILED: "idem-no-such-command": command not found\n');
    const notExec = await idem(['run', '--key', key, '--store', store, '--', join(work)]);
    expect(notExec.code).toBe(126);
    expect((await idem(['status', key, '--store', store])).code).toBe(1);
  });

  it('a different --fingerprint on a known key is KEY_REUSE_MISMATCH (exit 65)', async () => {
    const store = freshStore();
    const key = freshKey('fp');
    expect((await idem(['run', '--key', key, '--store', store, '--fingerprint', 'sha256:aaa', '--', 'true'])).code).toBe(0);
    const same = await idem(['run', '--key', key, '--store', store, '--fingerprint', 'sha256:aaa', '--json', '--', 'true']);
    expect(same.json.status).toBe('skipped_idempotent');
    const other = await idem(['run', '--key', key, '--store', store, '--fingerprint', 'sha256:bbb', '--json', '--', 'true']);
    expect(other.code).toBe(65);
    expect(other.json).toMatchObject({ status: 'error', error: { code: 'KEY_REUSE_MISMATCH' } });
  });

  it('--force runs the command again over a success', async () => {
    const store = freshStore();
    const key = freshKey('force');
    const file = counter(key);
    await idem(['run', '--key', key, '--store', store, '--', ...sh('echo one >> "$1"', file)]);
    const forced = await idem(['run', '--key', key, '--store', store, '--force', '--json', '--', ...sh('echo two >> "$1"', file)]);
    expect(forced.json).toMatchObject({ status: 'succeeded', outcome: 'adopted', fence: 2 });
    expect(lines(file)).toEqual(['one', 'two']);
  });

  it('takes the key and store from IDEM_KEY / IDEM_STORE and gives the command its run id and fence', async () => {
    const dir = tempDir('idem-cli-env-');
    const file = counter(freshKey('env'));
    const env = { IDEM_KEY: 'from-env', IDEM_STORE: `lmdb:${join(dir, 'db')}` };
    const r = await idem(['run', '--json', '--', ...sh('echo "$IDEM_RUN_ID $IDEM_FENCE $IDEM_ATTEMPT" >> "$1"', file)], { env });
    expect(r.json).toMatchObject({ status: 'succeeded', key: 'from-env', store: `lmdb://${join(dir, 'db')}` });
    expect(lines(file)).toEqual([`${r.json.run_id} 1 1`]);
    const status = await idem(['status', '--json'], { env });
    expect(status.json.record.key).toBe('from-env');
  });

  it('defaults to the embedded store in ./.idem', async () => {
    const cwd = tempDir('idem-cli-default-');
    const r = await idem(['run', '--key', 'k', '--json', '--', 'true'], { cwd });
    expect(r.json.store).toBe(`lmdb://${join(cwd, '.idem')}`);
    expect(readFileSync(join(cwd, '.idem', 'idem.mdb')).length).toBeGreaterThan(0);
  });

  it('on LMDB loads neither the AWS, GCS nor Redis clients, nor OpenTelemetry without --otel', async () => {
    const log = join(work, 'loaded.txt');
    // A resolve hook records every module the process asks for.
    const hook = `data:text/javascript,${encodeURIComponent(
      `import{registerHooks}from'node:module';import{appendFileSync}from'node:fs';registerHooks({resolve(s,c,n){appendFileSync(${JSON.stringify(log)},s+'\\n');return n(s,c)}})`,
    )}`;
    const r = await idem(['run', '--key', 'k', '--store', freshStore(), '--', 'true'], { nodeArgs: ['--import', hook] });
    expect(r.code).toBe(0);
    const loaded = lines(log);
    expect(loaded).toContain('@idem/lmdb/url');
    expect(loaded.filter((s) => /@aws-sdk|@google-cloud|ioredis|@opentelemetry|@idem\/(s3|gcs|valkey|otel)/.test(s))).toEqual([]);
  });
});
