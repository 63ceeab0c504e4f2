// The idem:* channels' promise that listening never changes what idem does. The cases every
// backend shares (payloads, outcomes, keys kept out) are in @idem/conformance (tests/events.ts).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@idem/core';
import { createMemoryStore } from '@idem/core/memory';

// A subscriber's exception is raised by Node on a later tick as an uncaught exception, which
// would end a test worker: the throwing subscriber runs in a child process that counts them.
const SCRIPT = `
import { tracingChannel } from 'node:diagnostics_channel';
import { AsyncLocalStorage } from 'node:async_hooks';
import { runOnce } from '@idem/core';
import { createMemoryStore } from '@idem/core/memory';
let thrown = 0;
process.on('uncaughtException', () => thrown++);
const boom = () => { throw new Error('subscriber bug'); };
for (const op of ['claim', 'complete', 'fail', 'runOnce']) {
  tracingChannel('idem:' + op).subscribe({ start: boom, end: boom, asyncStart: boom, asyncEnd: boom, error: boom });
  tracingChannel('idem:' + op).start.bindStore(new AsyncLocalStorage(), boom);
}
const store = createMemoryStore();
const first = await runOnce(store, 'k', () => 42);
const dup = await runOnce(store, 'k', () => 43);
const failed = await runOnce(store, 'f', () => { throw new Error('work failed'); }).catch((e) => e.message);
await new Promise((r) => setTimeout(r, 20));
console.log(JSON.stringify({ first: [first.status, first.value], dup: [dup.status, dup.result], failed, record: (await store.get('f')).status, thrown }));
`;

describe('events', () => {
  it('a subscriber that throws changes no outcome: its errors surface as uncaught exceptions, outside the call', async () => {
    const cwd = fileURLToPath(new URL('..', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', SCRIPT], { cwd });
    const seen = JSON.parse(stdout);
    expect(seen).toMatchObject({ first: ['executed', 42], dup: ['completed', 42], failed: 'work failed', record: 'failed' });
    expect(seen.thrown).toBeGreaterThan(10);
  });

  it('keysInEvents is checked with the other options', () => {
    expect(() => createMemoryStore({ keysInEvents: 'no' as never })).toThrow(InvalidArgumentError);
    expect(createMemoryStore().keysInEvents).toBe(true);
    expect(createMemoryStore({ hashKeys: true }).keysInEvents).toBe(false);
    expect(createMemoryStore().kind).toBe('memory');
  });
});
