// The client side of the store: what it needs of a client (ValkeyClient, structural), and the
// client it opens itself from a URL, cluster seeds or Sentinel settings (openClient), with the
// settings that keep a down server from holding an operation past timeoutMs.
import type { Cluster, Redis } from 'ioredis';
import { InvalidArgumentError, InvalidStoreUrlError } from '@idem/core/adapter';
import { loadOptional } from '@idem/core/url';
import type { ValkeyUrlConfig } from './url.js';

export type Arg = string | number | Buffer;

/**
 * What the store needs of a client: ioredis `Redis` or `Cluster`, or a
 * compatible client such as iovalkey. Typed structurally so that another
 * copy of ioredis (or a fork) is accepted too.
 */
export interface ValkeyClient {
  call(command: string, ...args: Arg[]): Promise<unknown>;
  callBuffer(command: string, ...args: Arg[]): Promise<unknown>;
  /** Used instead of callBuffer when present (ioredis, iovalkey): see ValkeyDriver.sendScript (driver.ts). */
  evalshaBuffer?(sha: string, numKeys: number, ...args: Arg[]): Promise<unknown>;
  evalBuffer?(script: string, numKeys: number, ...args: Arg[]): Promise<unknown>;
  quit(): Promise<unknown>;
  /** Present on a Cluster: the master nodes `list` scans. */
  nodes?(role: 'master'): ValkeyClient[];
  /** Instead of nodes, on a client that learns its masters by asking (a GLIDE cluster client, glide.ts). */
  masters?(): Promise<ValkeyClient[]>;
  /** Needed with minReplicas: WAIT travels in the same pipeline (round trip, and node) as the script. */
  pipeline?(): ValkeyPipeline;
  /** Present on a Cluster: asked after a MOVED reply inside a pipeline, which ioredis does not follow itself. */
  refreshSlotsCache?(): void;
  /** Present on a Cluster (ioredis): slot -> ["host:port" of its master, then its replicas], to share one WAIT per master. */
  slots?: string[][];
  isCluster?: boolean;
  /** The connection's socket (ioredis, iovalkey): corked for the rest of a tick, see TickBatcher.cork (batch.ts). */
  stream?: { cork(): void; uncork(): void };
  // `| undefined`: ioredis declares it so, and callers may compile with exactOptionalPropertyTypes.
  options?: { keyPrefix?: string | undefined };
}

/** The part of an ioredis pipeline the store uses. */
export interface ValkeyPipeline {
  call(command: string, ...args: Arg[]): ValkeyPipeline;
  exec(): Promise<Array<[Error | null, unknown]> | null>;
}

/** What the connection learnt that makes every operation fail: a database the server does not have. */
export interface Guard {
  fatal?: Error;
}

/**
 * The settings of a client the store opens itself. Exported for the tests, which check that a
 * down server cannot hold an operation past timeoutMs inside ioredis.
 */
export function ownedClientOptions(timeoutMs: number) {
  return {
    // Fail fast: ioredis's defaults queue a command through 20 reconnects (over a minute) when the
    // server is down. The store retries within timeoutMs itself, with the same arguments.
    maxRetriesPerRequest: 1,
    connectTimeout: timeoutMs,
    // No commandTimeout: the store bounds every attempt itself (one shared timer for first attempts,
    // see Deadlines), and ioredis's would arm and clear a timer per command, a measurable share of a
    // first execution's client CPU. A reply that never comes fails the operation at timeoutMs either way.
    // Reconnect quickly, so a failover (a new primary) is found within a second.
    retryStrategy: (times: number) => Math.min(times * 50, 500),
    // A primary demoted to replica answers READONLY: reconnect (Sentinel then names the new primary) and resend.
    reconnectOnError: (error: Error) => (error.message.startsWith('READONLY') ? 2 : false),
  } as const;
}

export async function openClient(target: ValkeyUrlConfig | undefined, cluster: string[] | undefined, timeoutMs: number, guard: Guard): Promise<ValkeyClient> {
  // ioredis is an optional peer dependency, loaded only here: an app that gives its own node-redis
  // or GLIDE client installs none. Missing: ADAPTER_MISSING, naming what to install.
  const scheme = target === undefined ? 'cluster' : (/^([a-z][a-z0-9+.-]*):/i.exec(target.url)?.[1]?.toLowerCase() ?? 'redis');
  const { Cluster, Redis } = await loadOptional(scheme, 'ioredis', () => import('ioredis'));
  const common = ownedClientOptions(timeoutMs);
  const parse = (text: string) => {
    try {
      return new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text.replace(/^valkey(s?):/i, 'redis$1:') : `redis://${text}`);
    } catch (cause) {
      throw new InvalidArgumentError(`not a server address: ${JSON.stringify(text)}`, cause);
    }
  };
  const seeds = target?.cluster ?? cluster;
  let c: Redis | Cluster;
  if (target?.sentinel !== undefined) {
    const { sentinels, name, db, username, password, sentinelUsername, sentinelPassword } = target.sentinel;
    c = new Redis({
      ...common,
      sentinels,
      name,
      db,
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(sentinelUsername !== undefined ? { sentinelUsername } : {}),
      ...(sentinelPassword !== undefined ? { sentinelPassword } : {}),
      // No failoverDetector: its sentinel subscriptions outlive quit() and keep the process alive. A
      // killed primary breaks the connection, and a demoted one answers READONLY (reconnectOnError):
      // either way the client asks the sentinels again.
      sentinelRetryStrategy: (times: number) => Math.min(times * 100, 1000),
    });
  } else if (seeds === undefined) {
    // The server URL without its query (the grammar took every parameter out): ioredis reads none.
    c = new Redis(parse(target!.server).href, common);
  } else {
    if (!Array.isArray(seeds) || seeds.length === 0 || !seeds.every((s) => typeof s === 'string'))
      throw new InvalidArgumentError('cluster must be a non-empty list of "host:port"');
    const urls = seeds.map(parse);
    const first = urls[0]!;
    c = new Cluster(
      urls.map((u) => ({ host: u.hostname, port: Number(u.port || 6379) })),
      {
        redisOptions: {
          ...common,
          ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
          ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
          ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
        },
      },
    );
  }
  // Errors reach callers as BACKEND_UNAVAILABLE; the event only needs a listener so it is not logged as unhandled.
  // Except one: ioredis reports a failed SELECT (a database index the server does not have) only here
  // and then carries on in database 0, where stores meant to be apart would share keys. The store
  // closes that connection before anything else is sent on it (the event comes during the handshake,
  // before queued commands are flushed) and every operation fails from then on.
  c.on('error', (error: Error & { command?: { name?: string } }) => {
    if (error?.command?.name !== 'select' || guard.fatal) return;
    guard.fatal = new InvalidStoreUrlError(
      `the server refused the URL's database index (${error.message}); stores on one server share nothing only through their prefix`,
      error,
    );
    c.disconnect();
  });
  return c as unknown as ValkeyClient;
}
