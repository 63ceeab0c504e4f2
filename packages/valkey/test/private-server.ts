// A server of the fault tests' own (Valkey 8 in CI: IDEM_TEST_REDIS_SERVER_BIN), which they may stop and restart
// without disturbing the shared servers; a TCP proxy that can lose a reply;
// and the checks the fault tests of every client (ioredis, node-redis) share.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { expect } from 'vitest';
import { Redis } from 'ioredis';
import { expectLease as leaseOf } from '@idem/conformance/testing';
import { IdemError, type IdempotencyStore } from '@idem/core';
import { inCI } from '@idem/test-fixtures';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The server binary the private servers run: IDEM_TEST_REDIS_SERVER_BIN, the Valkey 8
 * valkey-server that scripts/servers/redis.sh starts the shared servers with; outside CI
 * without it, a valkey-server or redis-server on PATH.
 */
function serverBinary(): string | undefined {
  const fromEnv = process.env.IDEM_TEST_REDIS_SERVER_BIN;
  if (fromEnv) return fromEnv;
  if (inCI) return undefined; // CI runs them on the Valkey 8 of redis.sh, never on whatever PATH has
  return ['valkey-server', 'redis-server'].find((bin) => spawnSync(bin, ['--version']).status === 0);
}
const SERVER_BIN = serverBinary();

/** True when the private servers have a binary to run; a loud skip otherwise, a failure under CI. */
export function haveRedisServer(): boolean {
  if (SERVER_BIN && spawnSync(SERVER_BIN, ['--version']).status === 0) return true;
  const why = inCI
    ? 'valkey fault tests: IDEM_TEST_REDIS_SERVER_BIN does not name a runnable server (scripts/servers/redis.sh start prints it)'
    : 'valkey fault tests: no IDEM_TEST_REDIS_SERVER_BIN, and no valkey-server or redis-server on PATH (run scripts/servers/redis.sh start)';
  if (inCI) throw new Error(`CI=true and ${why}`);
  console.warn(`\n!!! SKIPPING the ${why} !!!\n`);
  return false;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** Replication (a test may make one server the replica of another) through the socket: no dump.rdb in the working directory. */
const DISKLESS = ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0', '--repl-diskless-load', 'swapdb'];

/** What a test may add to a private server: arguments after the defaults (later ones win), and environment. */
export interface ServerSetup {
  args?: string[];
  env?: Record<string, string>;
}

export class PrivateServer {
  private child: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    private readonly setup: ServerSetup,
  ) {}

  static async start(setup: ServerSetup = {}): Promise<PrivateServer> {
    const server = new PrivateServer(await freePort(), setup);
    await server.restart();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /**
   * (Re)starts the server on the same port with the same setup. By default no persistence, so no
   * scripts and no keys survive; a setup with `--appendonly yes --dir D` reloads what D's AOF holds.
   */
  async restart(): Promise<void> {
    const child = spawn(
      SERVER_BIN!,
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--enable-debug-command',
        'local',
        ...DISKLESS,
        ...(this.setup.args ?? []),
      ],
      { stdio: 'ignore', env: { ...process.env, ...this.setup.env } },
    );
    this.child = child;
    for (let i = 0; i < 100; i++) {
      const probe = new Redis(this.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        if ((await probe.ping()) === 'PONG') return;
      } catch (error) {
        if (!(error instanceof Error)) throw error; // not up yet
      } finally {
        probe.disconnect();
      }
      await sleep(50);
    }
    throw new Error(`${SERVER_BIN} on ${this.port} did not start`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  /** A direct admin connection (never through a proxy). */
  admin(): Redis {
    const r = new Redis(this.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    r.on('error', () => undefined);
    return r;
  }
}

/** Calls of one command since the server started, from INFO commandstats: what the server really ran. */
export async function calls(admin: Redis, command: string): Promise<number> {
  const info = await admin.info('commandstats');
  const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
  return m ? Number(m[1]) : 0;
}

/** Script bodies the server ran: each run of either script calls TIME exactly once. */
export const scriptRuns = (admin: Redis) => calls(admin, 'time');

/**
 * Commands clients sent, seen through MONITOR (commands run by scripts are
 * left out): the round trips of what runs between start and `count()`.
 */
export async function watchCommands(admin: Redis): Promise<{ count(): Promise<string[]>; stop(): void }> {
  const mon = await admin.monitor();
  mon.on('error', () => undefined);
  const seen: string[] = [];
  mon.on('monitor', (_time: string, args: string[], source: string) => {
    if (source !== 'lua') seen.push(String(args[0]).toUpperCase());
  });
  return {
    async count() {
      // MONITOR lines trail the replies: wait for the first, then until none came for 100 ms (at most 5 s).
      const until = Date.now() + 5000;
      for (let n = -1; (n !== seen.length || seen.length === 0) && Date.now() < until; ) {
        n = seen.length;
        await sleep(100);
      }
      return seen.splice(0);
    },
    stop: () => mon.disconnect(),
  };
}

/**
 * Forwards loopback TCP to a server. `loseNextScriptReply()` lets the next
 * EVAL/EVALSHA reach the server (the write lands) and then cuts the
 * connection instead of delivering the reply. `cut()` drops every connection
 * and refuses new ones until `heal()`.
 */
export class ReplyLosingProxy {
  private server: Server | undefined;
  private sockets = new Set<Socket>();
  private armed = false;
  private cutAfter = false;
  private refusing = false;
  /** Replies swallowed so far. */
  lost = 0;

  constructor(private readonly target: number) {}

  get url(): string {
    return `redis://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async start(): Promise<this> {
    this.server = createServer((client) => {
      if (this.refusing) return void client.destroy();
      const upstream = connect(this.target, '127.0.0.1');
      this.sockets.add(client).add(upstream);
      let awaitingScript = false;
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('data', (d: Buffer) => {
        if (this.armed && /EVAL(SHA)?\r\n/i.test(d.toString('latin1'))) {
          this.armed = false;
          awaitingScript = true;
        }
        upstream.write(d);
      });
      upstream.on('data', (d: Buffer) => {
        if (awaitingScript) {
          this.lost++;
          if (this.cutAfter) this.cut();
          return close();
        }
        client.write(d);
      });
      for (const s of [client, upstream]) {
        s.on('error', close);
        s.on('close', () => {
          this.sockets.delete(s);
          close();
        });
      }
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    return this;
  }

  /** With `thenCut`, the server also becomes unreachable right after (until heal()). */
  loseNextScriptReply(thenCut = false): void {
    this.armed = true;
    this.cutAfter = thenCut;
  }

  cut(): void {
    this.refusing = true;
    for (const s of this.sockets) s.destroy();
  }

  heal(): void {
    this.refusing = false;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server?.close(r));
  }
}

/** Retries `fn` while the backend is unavailable (a client reconnecting), up to `ms`. */
export async function whenBack<T>(fn: () => Promise<T>, ms = 15_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if (!(error instanceof IdemError && error.code === 'BACKEND_UNAVAILABLE') || Date.now() > until) throw error;
      await sleep(100);
    }
  }
}

/** One command (EVALSHA) per uncontended claim, duplicate claim and complete, seen through MONITOR. */
export async function expectOneRoundTripEach(store: IdempotencyStore, admin: Redis): Promise<void> {
  // Connection handshake, and the first use of each script (NOSCRIPT, then its body) happen here.
  await store.complete(leaseOf(await store.claim('warm-up')));
  const watch = await watchCommands(admin);
  try {
    const lease = leaseOf(await store.claim('rt'));
    expect(await watch.count()).toEqual(['EVALSHA']);
    expect((await store.claim('rt')).outcome).toBe('in_flight');
    expect(await watch.count()).toEqual(['EVALSHA']);
    await store.complete(lease, { result: [] });
    expect(await watch.count()).toEqual(['EVALSHA']);
  } finally {
    watch.stop();
  }
  // The caller's result is stored as sent: an empty array stays an array.
  expect((await store.get('rt'))?.result).toEqual([]);
}

/** After SCRIPT FLUSH a claim and a complete each send their script's body once (EVAL), then succeed. */
export async function expectNoscriptHandled(store: IdempotencyStore, admin: Redis): Promise<void> {
  expect((await store.claim('flush-1')).outcome).toBe('acquired');
  await admin.call('SCRIPT', 'FLUSH');
  const evals = await calls(admin, 'eval');
  const lease = leaseOf(await store.claim('flush-2'));
  await admin.call('SCRIPT', 'FLUSH');
  expect((await store.complete(lease)).status).toBe('succeeded');
  expect((await calls(admin, 'eval')) - evals).toBe(2);
}
