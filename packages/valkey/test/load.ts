// The load of the failover and power-loss tests, and its counting: worker processes
// (failover-worker.mjs) claim and complete shared and own keys in a loop while the test makes
// faults, then the acknowledged executions and completions are checked against what survived:
//   double executions: a key acknowledged as acquired more than once;
//   forgotten completions: a completion acknowledged, then gone (the key is not `succeeded` at
//     the end, or was acquired again after it);
//   errors by code, and the longest time a worker went without an answer.
// Also the small admin helpers both tests use (one command to one server, polling).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { Redis } from 'ioredis';
import { createValkeyStore, type ValkeyStoreOptions } from '../src/index.js';
import { freshPrefix } from './server.js';

const workerScript = fileURLToPath(new URL('./failover-worker.mjs', import.meta.url));

export const FAILOVERS = 2; // per scenario; four scenarios
const WORKERS = 3;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` is true; the bound is only there to turn a hang into a message. */
export async function waitUntil(what: string, check: () => Promise<boolean>, ms = 120_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch (error) {
      if (!(error instanceof Error)) throw error; // a server still coming up: ask again
    }
    if (Date.now() > until) throw new Error(`not reached in ${ms} ms: ${what}`);
    await sleep(100);
  }
}

/** One command to one server on its own short-lived connection. */
export async function ask(port: number, ...args: Array<string | number>): Promise<unknown> {
  const r = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return await r.call(String(args[0]), ...args.slice(1));
  } finally {
    r.disconnect();
  }
}

/** A flat Redis reply [field, value, field, value, ...] as an object. */
export const fieldsOf = (flat: string[]): Record<string, string> => Object.fromEntries(flat.flatMap((v, i) => (i % 2 ? [] : [[v, flat[i + 1]!]])));

export const infoField = async (port: number, section: string, field: string) =>
  new RegExp(`^${field}:(.*)\r?$`, 'm').exec(String(await ask(port, 'INFO', section)))?.[1];
export const pidOf = async (port: number) => Number(await infoField(port, 'server', 'process_id'));
export const synced = async (port: number) => (await infoField(port, 'replication', 'master_link_status')) === 'up';

interface Event {
  e: 'claim' | 'exec' | 'done' | 'lost' | 'err';
  k?: string;
  o?: string;
  c?: string;
  t: number;
  w: number;
}

export interface Figures {
  failovers: number;
  operations: number;
  executions: number;
  doubleExecutions: number;
  completionsAcknowledged: number;
  forgottenCompletions: number;
  errors: Record<string, number>;
  leaseLost: number;
  /** Per fault: the longest any worker went without an answer around it (from 1 s before to 60 s after). */
  recoveryMs: number[];
  /** The longest any worker went without an answer. */
  longestStallMs: number;
}

export async function underLoad(
  store: Partial<ValkeyStoreOptions> & { userSentinelClient?: unknown },
  failover: () => Promise<number>,
  verifyWith: Partial<ValkeyStoreOptions>,
  /** How many faults, and how many answers the workers give before the first and after each. */
  { count = FAILOVERS, answers = 30 }: { count?: number; answers?: number } = {},
): Promise<Figures> {
  const prefix = freshPrefix();
  const events: Event[] = [];
  const children: ChildProcess[] = [];
  const exits: Array<Promise<number | null>> = [];
  for (let w = 0; w < WORKERS; w++) {
    const { userSentinelClient, ...own } = store;
    const config = {
      id: w,
      shared: 4,
      own: 4,
      pause: 25,
      store: { ...own, prefix },
      ...(w === WORKERS - 1 && userSentinelClient ? { userSentinelClient } : {}),
    };
    const child = spawn(process.execPath, [workerScript, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(child);
    exits.push(new Promise((r) => child.once('exit', r)));
    createInterface({ input: child.stdout! }).on('line', (line) => events.push({ ...(JSON.parse(line) as Event), w }));
  }
  const answered = (from: number) => events.filter((e) => (e.e === 'claim' || e.e === 'done') && e.t > from).length;
  try {
    await waitUntil('the workers get going', async () => answered(0) >= answers);
    const faults: number[] = [];
    for (let i = 0; i < count; i++) {
      const fault = await failover();
      faults.push(fault);
      await waitUntil('the loop continues after the failover', async () => answered(fault) >= answers);
    }
    for (const child of children) child.stdin!.end();
    let exited = false;
    void Promise.all(exits).then(() => (exited = true));
    await waitUntil('every worker stops', async () => exited);
    const codes = await Promise.all(exits);
    expect(codes).toEqual(children.map(() => 0));

    const execs = new Map<string, Event[]>();
    const done = new Map<string, number>();
    const errors: Record<string, number> = {};
    for (const ev of events) {
      if (ev.e === 'exec') execs.set(ev.k!, [...(execs.get(ev.k!) ?? []), ev]);
      if (ev.e === 'done') done.set(ev.k!, ev.t);
      if (ev.e === 'err') errors[ev.c!] = (errors[ev.c!] ?? 0) + 1;
    }
    const verify = await createValkeyStore({ ...verifyWith, prefix } as ValkeyStoreOptions);
    let forgotten = 0;
    try {
      const keys = [...done.keys()];
      for (let i = 0; i < keys.length; i += 100) {
        const records = await Promise.all(keys.slice(i, i + 100).map((k) => verify.get(k)));
        records.forEach((record, j) => {
          const k = keys[i + j]!;
          const againAfter = (execs.get(k) ?? []).some((ev) => ev.t > done.get(k)!);
          if (record?.status !== 'succeeded' || againAfter) forgotten++;
        });
      }
    } finally {
      await verify.close();
    }
    const stall = (w: number, from = 0, to = Infinity) => {
      const times = events.filter((e) => e.w === w && (e.e === 'claim' || e.e === 'done') && e.t >= from && e.t <= to).map((e) => e.t);
      return Math.max(0, ...times.slice(1).map((t, i) => t - times[i]!));
    };
    const workers = Array.from({ length: WORKERS }, (_, w) => w);
    return {
      failovers: faults.length,
      operations: events.filter((e) => e.e === 'claim' || e.e === 'done').length,
      executions: [...execs.values()].reduce((n, list) => n + list.length, 0),
      doubleExecutions: [...execs.values()].reduce((n, list) => n + list.length - 1, 0),
      completionsAcknowledged: done.size,
      forgottenCompletions: forgotten,
      errors,
      leaseLost: events.filter((e) => e.e === 'lost').length,
      recoveryMs: faults.map((f) => Math.max(...workers.map((w) => stall(w, f - 1000, f + 60_000)))),
      longestStallMs: Math.max(...workers.map((w) => stall(w))),
    };
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  }
}
