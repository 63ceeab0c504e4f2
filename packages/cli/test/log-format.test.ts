// --log-format json: idem's own stderr lines as one JSON object each, for log shippers.
// Every line is checked against schemas/log.schema.json (closed: no field it does not list).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '@idem/test-fixtures';
import { describe, expect, it } from 'vitest';
import { freshKey, freshStore, heldOwner, idem, start, until } from './helpers.js';
import { violations } from './schemas.js';

/** stderr as log objects, each one validated. */
function logLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const value = JSON.parse(line) as Record<string, unknown>;
      expect(violations('log', value), line).toBeUndefined();
      return value;
    });
}

describe('idem --log-format json', () => {
  it('writes a claimed and a finished line for a run, and the replay names the run that finished it', async () => {
    const store = freshStore();
    const key = freshKey('log');
    const first = await idem(['run', '--log-format', 'json', '--key', key, '--store', store, '--json', '--', 'true']);
    expect(first.code).toBe(0);
    const [claimed, finished, ...rest] = logLines(first.stderr);
    expect(rest).toEqual([]);
    const runId = first.json.run_id as string;
    expect(claimed).toMatchObject({ level: 'info', event: 'claimed', key, run_id: runId, outcome: 'acquired', fence: first.json.fence, attempt: 1 });
    expect(claimed!.message).toMatch(/^acquired "log-.*running: true$/);
    expect(finished).toMatchObject({ level: 'info', event: 'finished', key, run_id: runId, status: 'succeeded', exit_code: 0, outcome: 'acquired' });
    expect(Date.parse(finished!.time as string)).toBeGreaterThanOrEqual(Date.parse(claimed!.time as string));

    const again = await idem(['run', '--key', key, '--store', store, '--', 'true'], { env: { IDEM_LOG_FORMAT: 'json' } });
    expect(again.code).toBe(0);
    expect(logLines(again.stderr)).toEqual([
      expect.objectContaining({ event: 'finished', key, status: 'skipped_idempotent', holder_run_id: runId, outcome: null, fence: null }),
    ]);
  });

  it('a failed command is an error line; idem’s own error carries its code; no colour, whatever FORCE_COLOR says', async () => {
    const store = freshStore();
    const key = freshKey('log');
    const failed = await idem(['run', '--key', key, '--store', store, '--log-format=json', '--', 'sh', '-c', 'exit 3'], {
      env: { FORCE_COLOR: '1', NO_COLOR: undefined },
    });
    expect(failed.code).toBe(3);
    const end = logLines(failed.stderr).at(-1);
    expect(end).toMatchObject({ level: 'error', event: 'finished', status: 'failed', exit_code: 3, code: null });
    expect(failed.stderr).not.toContain('\u001b[');

    await idem(['run', '--key', key, '--store', store, '--fingerprint', 'a', '--', 'true']);
    const mismatch = await idem(['run', '--key', key, '--store', store, '--fingerprint', 'b', '--log-format', 'json', '--', 'true']);
    expect(mismatch.code).toBe(65);
    expect(logLines(mismatch.stderr)).toEqual([
      expect.objectContaining({ level: 'error', event: 'finished', code: 'KEY_REUSE_MISMATCH', status: 'error', exit_code: 65, key }),
    ]);
  });

  it('a key with control and bidi characters parses back exactly, and no raw control character reaches the log', async () => {
    const store = freshStore();
    const key = `log-\u202e-\u0085-${process.pid}`;
    const ran = await idem(['run', '--key', key, '--store', store, '--log-format', 'json', '--', 'true']);
    expect(ran.code).toBe(0);
    expect(ran.stderr).not.toMatch(/[\u0080-\u009f\u202e]/);
    for (const line of logLines(ran.stderr)) expect(line.key).toBe(key);
  });

  it('a waiting run writes a line naming the holder, once per holder', async () => {
    const store = freshStore();
    const key = freshKey('log');
    const { owner, release } = await heldOwner(store, key, join(tempDir('idem-log-'), 'ran'));
    const waiter = start(['run', '--key', key, '--store', store, '--on-in-flight', 'wait', '--log-format', 'json', '--', 'true']);
    // The waiting line is written at the first poll; the owner finishes only after it.
    const seen: string[] = [];
    waiter.child.stderr!.on('data', (d: Buffer | string) => seen.push(String(d)));
    await until(() => seen.join('').includes('"event":"waiting"'), 60_000, 'the waiting line');
    release();
    const ownerRun = await owner.done;
    const waited = await waiter.done;
    expect(waited.code).toBe(0);
    const logged = logLines(waited.stderr);
    expect(logged.filter((l) => l.event === 'waiting')).toEqual([
      expect.objectContaining({ level: 'info', key, holder_run_id: ownerRun.json.run_id, fence: ownerRun.json.fence }),
    ]);
    expect(logged.at(-1)).toMatchObject({ event: 'finished', status: 'skipped_idempotent', holder_run_id: ownerRun.json.run_id });
  });

  it('the admin commands’ lines too; a flag wins over IDEM_LOG_FORMAT; a bad value is a usage error before any I/O', async () => {
    const store = freshStore();
    const key = freshKey('log');
    const status = await idem(['status', key, '--store', store, '--log-format', 'json']);
    expect(logLines(status.stderr)).toEqual([expect.objectContaining({ event: 'status', key, level: 'info' })]);
    await idem(['run', '--key', key, '--store', store, '--', 'true']);
    const released = await idem(['release', key, '--force', '--store', store], { env: { IDEM_LOG_FORMAT: 'json' } });
    expect(logLines(released.stderr)).toEqual([expect.objectContaining({ event: 'released', key })]);

    const text = await idem(['status', key, '--store', store, '--log-format', 'text'], { env: { IDEM_LOG_FORMAT: 'json' } });
    expect(text.stderr).toMatch(/^idem: no record of /);

    const dir = tempDir('idem-log-');
    for (const [args, env, from] of [
      [['--log-format', 'yaml'], {}, '--log-format'],
      [[], { IDEM_LOG_FORMAT: 'JSON' }, 'IDEM_LOG_FORMAT'],
    ] as const) {
      const bad = await idem(['run', ...args, '--key', key, '--store', `lmdb:${join(dir, 'never')}`, '--', 'true'], { env });
      expect(bad.code).toBe(64);
      expect(bad.stderr).toBe(`idem: USAGE: ${from} must be text or json, got ${JSON.stringify(args[1] ?? env.IDEM_LOG_FORMAT)}\n`);
    }
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });
});
