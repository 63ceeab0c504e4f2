// "Cannot double-charge", proved with real processes on every backend: a payment API (its own
// process, fixtures/charge-server.mjs) behind @idem/http charges through a payment provider that
// this test plays. The provider honours fences: it refuses a charge whose fence is below one it
// has seen for the key (the downstream half of fencing, docs/http.md).
//  - a server killed mid-request: a retry, once the lease is dead, runs the handler again exactly once;
//  - a server stopped mid-request (SIGSTOP: a GC pause, a frozen VM) past its lease: another takes
//    over and charges; the stale one, resumed, is refused by the provider and by the store (its
//    finish is fenced), answers 500 LEASE_LOST, and the successor's response is what replays.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, storeEnv, unique } from './backends.js';
import { post } from './servers.js';

const LEASE_MS = 1000;

/** The payment provider: logs every call; holds a `begin` while the test wants; charges at most once per fence order. */
class Provider {
  calls: string[] = [];
  charges: { name: string; fence: number }[] = [];
  #highest = 0;
  #held = new Map<string, ServerResponse>();
  #waiters: { name: string; resolve: () => void }[] = [];
  holdBegin = new Set<string>();
  url = '';
  readonly server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url!, 'http://x');
    const name = u.searchParams.get('name')!;
    const fence = Number(u.searchParams.get('fence'));
    this.calls.push(`${u.pathname.slice(1)} ${name} ${fence}`);
    for (const w of this.#waiters.filter((w) => w.name === name)) w.resolve();
    if (u.pathname === '/begin') {
      if (this.holdBegin.has(name)) this.#held.set(name, res);
      else res.end();
      return;
    }
    // Fenced downstream: a charge from a claim older than one already seen is refused.
    if (fence < this.#highest) {
      res.statusCode = 409;
      res.end();
      return;
    }
    this.#highest = fence;
    this.charges.push({ name, fence });
    res.end();
  });
  /** Resolves when `name` has called the provider. */
  called(name: string): Promise<void> {
    if (this.calls.some((c) => c.split(' ')[1] === name)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ name, resolve }));
  }
  release(name: string): void {
    this.holdBegin.delete(name);
    this.#held.get(name)?.end();
    this.#held.delete(name);
  }
}

async function startServer(storeUrl: string, provider: string, name: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'fixtures/charge-server.mjs'), storeUrl, provider, name, String(LEASE_MS)], {
    env: { ...process.env, ...storeEnv },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`server ${name} exited (${code}) before listening`)));
  });
  return { url: `http://127.0.0.1:${line.trim()}`, child };
}

/** The fence `name` began with (Valkey starts a key's fences at its clock, others at 1). */
const fenceOf = (provider: Provider, name: string) => Number(provider.calls.find((c) => c.startsWith(`begin ${name} `))!.split(' ')[2]);

/** Retries like a client would until the answer is not 409 (the owner's lease has to die first). */
async function retryUntilServed(url: string, body: unknown, headers: Record<string, string>) {
  for (;;) {
    const r = await post(url, body, headers);
    if (r.status !== 409) return r;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.each(BACKENDS)('cannot double-charge on $name', (backend) => {
  const provider = new Provider();
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    await new Promise<void>((resolve) => provider.server.listen(0, '127.0.0.1', resolve));
    provider.url = `http://127.0.0.1:${(provider.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    provider.server.closeAllConnections();
    await new Promise((resolve) => provider.server.close(resolve));
  });
  const servers = async (store: string, ...names: string[]) =>
    Promise.all(
      names.map(async (n) => {
        const s = await startServer(store, provider.url, n);
        children.push(s.child);
        return s;
      }),
    );

  it('a server killed mid-request: the retry after one lease charges exactly once, and later retries replay it', async () => {
    const store = backend.url();
    const [a, b] = await servers(store, `killed-${unique('a')}`, `retry-${unique('b')}`);
    const [nameA, nameB] = [a!.child.spawnargs[4]!, b!.child.spawnargs[4]!];
    provider.holdBegin.add(nameA);
    const k = { 'idempotency-key': unique('pay') };
    const first = post(`${a!.url}/pay`, { amount: 100 }, k).catch((error: unknown) => error);
    await provider.called(nameA);
    a!.child.kill('SIGKILL');
    expect(await first).toBeInstanceOf(Error); // the connection died with the server
    const served = await retryUntilServed(`${b!.url}/pay`, { amount: 100 }, k);
    expect(served.status).toBe(201);
    const fenceA = fenceOf(provider, nameA);
    expect(served.json()).toMatchObject({ chargedBy: nameB });
    expect(served.json().fence).toBeGreaterThan(fenceA);
    const replay = await post(`${b!.url}/pay`, { amount: 100 }, k);
    expect(replay.text).toBe(served.text);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(provider.charges.filter((c) => c.name === nameA || c.name === nameB)).toEqual([{ name: nameB, fence: served.json().fence }]);
    provider.release(nameA);
    b!.child.kill('SIGKILL');
  });

  it('a stalled server past its lease: the successor charges; the stale one is refused downstream and by the store, and cannot overwrite', async () => {
    const store = backend.url();
    const [a, b] = await servers(store, `stalled-${unique('a')}`, `successor-${unique('b')}`);
    const [nameA, nameB] = [a!.child.spawnargs[4]!, b!.child.spawnargs[4]!];
    provider.holdBegin.add(nameA);
    const k = { 'idempotency-key': unique('pay') };
    const first = post(`${a!.url}/pay`, { amount: 250 }, k);
    await provider.called(nameA);
    a!.child.kill('SIGSTOP'); // no heartbeat from here on: the lease runs out
    const served = await retryUntilServed(`${b!.url}/pay`, { amount: 250 }, k);
    expect(served.status).toBe(201);
    const fenceA = fenceOf(provider, nameA);
    expect(served.json()).toMatchObject({ chargedBy: nameB });
    expect(served.json().fence).toBeGreaterThan(fenceA);
    provider.release(nameA);
    a!.child.kill('SIGCONT');
    const stale = await first;
    expect(stale.status).toBe(500);
    expect(stale.json()).toMatchObject({ code: 'LEASE_LOST', status: 500 });
    // The provider charged once, at the successor's fence; the stale charge (the older fence) was refused.
    expect(provider.charges.filter((c) => c.name === nameA || c.name === nameB)).toEqual([{ name: nameB, fence: served.json().fence }]);
    expect(provider.calls).toContain(`charge ${nameA} ${fenceA}`);
    // The successor's response is what every later retry gets, from either server.
    for (const url of [a!.url, b!.url]) {
      const replay = await post(`${url}/pay`, { amount: 250 }, k);
      expect(replay.text).toBe(served.text);
    }
    a!.child.kill('SIGKILL');
    b!.child.kill('SIGKILL');
  });
});
