// @idem/valkey: the options and createValkeyStore, the package's public entry. The rest, by job:
// client.ts (the client interface, and the client the store opens itself), driver.ts (the store's
// operations as Lua scripts, lua.ts), batch.ts (per-tick corking and the shared WAIT), deadline.ts
// (retries and time bounds), bytes.ts (the record's JSON bytes), scan.ts (list's nodes and cursor).
import {
  BackendUnavailableError,
  IdempotencyStore,
  InvalidArgumentError,
  resolveStoreOptions,
  UnsafeBackendError,
  validateBoolean,
  validateDuration,
  type StoreOptions,
} from '@idem/core/adapter';
import { openClient, type Guard, type ValkeyClient } from './client.js';
import { within } from './deadline.js';
import { ValkeyDriver } from './driver.js';
import { fromGlide, isGlide, type GlideClientLike } from './glide.js';
import { fromNodeRedis, isNodeRedis, type NodeRedisClient } from './node-redis.js';
import { parse as parseUrl } from './url.js';

export type { NodeRedisClient } from './node-redis.js';
export type { GlideClientLike } from './glide.js';
export { ownedClientOptions, type ValkeyClient, type ValkeyPipeline } from './client.js';

export interface ValkeyStoreOptions extends StoreOptions {
  /**
   * Your connected client (ioredis Redis or Cluster, iovalkey, a node-redis `createClient()` of
   * redis / @redis/client 5 or 6, or a Valkey GLIDE GlideClient or GlideClusterClient). You close
   * it; `store.close()` does not.
   */
  client?: ValkeyClient | NodeRedisClient | GlideClientLike;
  /**
   * Or a URL (redis://, rediss://, valkey://, valkeys://, or redis+sentinel:// / valkey+sentinel://
   * `[user:password@]host:port,host:port/masterName[/db]`): the store opens and closes its own client.
   * `?minReplicas=N&replicaTimeoutMs=T&fsync=true` in the query set the options below.
   */
  url?: string;
  /** Or cluster seed nodes ("host:port" or URLs): the store opens its own ioredis Cluster. */
  cluster?: string[];
  /** Namespace put in front of every key. Default "idem:". No braces: the store sets the hash tags. */
  prefix?: string;
  /**
   * How long a record stays in Valkey after it stops counting (past its lease, retention, release
   * or delete), so that the next claim continues its fence and a late finish can still land.
   * Fences stay strictly increasing as long as the server's clock never goes back by more. Default 1 hour.
   */
  lingerMs?: number;
  /** Bound on one operation, retries included; past it: BACKEND_UNAVAILABLE. Default 5 s. */
  timeoutMs?: number;
  /**
   * Replica acknowledgement: a claim and every finish return only once this many replicas of the
   * key's primary hold the write (WAIT, pipelined with the script: still one round trip). Fewer in
   * time: BACKEND_UNAVAILABLE (retryable; the write may exist, and a retry with the same runId
   * gets its own claim back). A replica's copy is in its memory, not on its disk. Default 0.
   */
  minReplicas?: number;
  /** How long WAIT (or WAITAOF) may wait for the replicas; below timeoutMs. Default min(1000, timeoutMs / 2). */
  replicaTimeoutMs?: number;
  /**
   * Acknowledged means on disk: a claim and every finish return only once the write is in the
   * append-only file, fsynced, on the key's primary and on `minReplicas` of its replicas
   * (WAITAOF 1 minReplicas, pipelined with the script instead of WAIT: still one round trip).
   * Needs WAITAOF (Valkey, Redis 7.2+), `appendonly yes` on every node, and on Valkey (or Redis
   * before 8.0) `appendfsync always`, whose WAITAOF acknowledges early under everysec: checked at
   * open, refused otherwise (UNSAFE_BACKEND). Default false.
   */
  fsync?: boolean;
}

/** The namespace when neither the URL nor the options give one. */
const DEFAULT_PREFIX = 'idem:';
const DEFAULT_LINGER_MS = 3600_000;
const DEFAULT_TIMEOUT_MS = 5_000;
/**
 * A store on Valkey/Redis (standalone or cluster). Claims and finishes are
 * single Lua scripts judged by the server's clock; records expire natively.
 */
export async function createValkeyStore(options: ValkeyStoreOptions): Promise<IdempotencyStore> {
  const {
    client,
    url,
    cluster,
    prefix: prefixOption,
    lingerMs = DEFAULT_LINGER_MS,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    minReplicas: minReplicasOption,
    replicaTimeoutMs: replicaTimeoutOption,
    fsync: fsyncOption,
    ...storeOptions
  } = options ?? ({} as ValkeyStoreOptions);
  const sources = [client, url, cluster].filter((x) => x !== undefined).length;
  if (sources !== 1) throw new InvalidArgumentError('give exactly one of client, url or cluster');
  if (prefixOption !== undefined && (typeof prefixOption !== 'string' || /[{}]/.test(prefixOption)))
    throw new InvalidArgumentError('prefix must be a string without { or } (the store sets hash tags itself)');
  validateDuration('lingerMs', lingerMs);
  validateDuration('timeoutMs', timeoutMs);
  // A URL is read by the one grammar of @idem/valkey/url, the same that the CLI and openStoreUrl
  // use, so one string names one store everywhere: a parameter it does not know is refused here too.
  if (url !== undefined && typeof url !== 'string') throw new InvalidArgumentError('url must be a string');
  const fromUrl = url !== undefined ? parseUrl(url) : undefined;
  const prefix = once('prefix', prefixOption, fromUrl?.prefix) ?? DEFAULT_PREFIX;
  const minReplicas = once('minReplicas', minReplicasOption, fromUrl?.minReplicas) ?? 0;
  const replicaTimeoutMs = once('replicaTimeoutMs', replicaTimeoutOption, fromUrl?.replicaTimeoutMs) ?? Math.min(1000, Math.floor(timeoutMs / 2));
  if (!Number.isSafeInteger(minReplicas) || minReplicas < 0) throw new InvalidArgumentError('minReplicas must be a whole number >= 0');
  validateDuration('replicaTimeoutMs', replicaTimeoutMs);
  // WAIT 0 would block forever; a WAIT as long as the whole budget leaves no time for its reply.
  if (replicaTimeoutMs < 1 || replicaTimeoutMs >= timeoutMs) throw new InvalidArgumentError('replicaTimeoutMs must be at least 1 and below timeoutMs');
  if (fsyncOption !== undefined) validateBoolean('fsync', fsyncOption);
  const fsync = once('fsync', fsyncOption, fromUrl?.fsync) ?? false;
  const resolved = resolveStoreOptions(storeOptions); // bad options fail before any connection is made
  let given: ValkeyClient | undefined;
  if (client !== undefined) {
    if (typeof client !== 'object' || client === null) throw new InvalidArgumentError(CLIENT_KINDS);
    // node-redis (sendCommand, no call) and GLIDE (customCommand): wrapped in a ValkeyClient; what they cannot do refused there.
    given = isNodeRedis(client) ? fromNodeRedis(client) : isGlide(client) ? fromGlide(client) : (client as ValkeyClient);
    if (typeof given.call !== 'function') throw new InvalidArgumentError(CLIENT_KINDS);
    // ioredis prefixes command keys but not SCAN results: list would then read the wrong keys.
    if (given.options?.keyPrefix) throw new InvalidArgumentError('client has keyPrefix set: use the store option prefix instead');
  }
  // WAIT (WAITAOF) counts the writes of its own connection: it must follow the scripts on theirs.
  if ((minReplicas > 0 || fsync) && given !== undefined && typeof given.pipeline !== 'function') {
    const which = minReplicas > 0 ? 'minReplicas' : 'fsync';
    throw new InvalidArgumentError(
      client !== undefined && isGlide(client)
        ? `${which} is not supported on a Valkey GLIDE client: GLIDE cannot send WAIT (WAITAOF) on the connection that ran the scripts, in their round trip; give an ioredis, iovalkey or node-redis client, or a url`
        : `${which} needs a client with pipeline() (ioredis Redis or Cluster, iovalkey, or node-redis)`,
    );
  }
  const guard: Guard = {};
  const owned = given === undefined ? await openClient(fromUrl, cluster, timeoutMs, guard) : undefined;
  const used = given ?? owned!;
  if (fsync) {
    try {
      await checkFsync(used, timeoutMs);
    } catch (error) {
      // The store's own ioredis client, dropped at once (quit would wait for a server that may be down).
      (owned as { disconnect?(): void } | undefined)?.disconnect?.();
      throw error;
    }
  }
  const driver = new ValkeyDriver(used, owned !== undefined, guard, { prefix, lingerMs, timeoutMs, minReplicas, replicaTimeoutMs, fsync });
  return new IdempotencyStore(driver, resolved);
}

const CLIENT_KINDS = 'client must be an ioredis-compatible Redis or Cluster, a node-redis client, or a Valkey GLIDE client';

/**
 * fsync needs WAITAOF (Valkey, and Redis 7.2 and later) and the append-only file on: asked once at
 * open with a WAITAOF that waits for nothing (this connection has written nothing yet), so that a
 * server that cannot keep the promise is refused before any write instead of failing every one.
 * And `appendfsync always` wherever WAITAOF acknowledges early under `everysec`: Valkey (8.0 to
 * 9.1 at least) and Redis before 8.0 report the local AOF as fsynced once the write reached the
 * file, before the fsync (`flushAppendOnlyFile`'s empty-buffer branch; Redis fixed it in 8.0), so a
 * power cut can lose an acknowledged write: the power-loss test saw it happen on Valkey 8.0.1.
 * A server that hides CONFIG (managed services) is taken at its word. On a cluster this asks
 * one node: configure every node alike.
 */
async function checkFsync(client: ValkeyClient, timeoutMs: number): Promise<void> {
  const ask = async (what: string, ...args: Array<string | number>) => {
    try {
      return await within(client.call(what, ...args), timeoutMs);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (what === 'WAITAOF' && /unknown command/i.test(message))
        throw new UnsafeBackendError('fsync-ack', 'fsync needs WAITAOF, which this server does not have: use Valkey 8 (or 7.2+) or Redis 7.2 or later', error);
      if (what === 'WAITAOF' && /appendonly/i.test(message))
        throw new UnsafeBackendError('fsync-ack', 'fsync needs appendonly yes on every node: this server has it off', error);
      if (what === 'CONFIG' && !/timeout|no reply|connect|closed/i.test(message)) return undefined; // CONFIG hidden: taken at its word
      throw new BackendUnavailableError(`Valkey/Redis unavailable while checking fsync (${what}): ${message}`, error);
    }
  };
  const reply = await ask('WAITAOF', 1, 0, 1);
  if (!Array.isArray(reply)) throw new UnsafeBackendError('fsync-ack', `fsync: unexpected WAITAOF reply ${JSON.stringify(reply)?.slice(0, 60)}`);
  const config = await ask('CONFIG', 'GET', 'appendfsync');
  const policy = Array.isArray(config) ? String(config[1]) : undefined;
  if (policy === undefined || policy === 'always') return;
  const info = String(await ask('INFO', 'server'));
  const field = (name: string) => new RegExp(`^${name}:(.*?)\r?$`, 'm').exec(info)?.[1];
  const valkey = field('server_name') === 'valkey' || field('valkey_version') !== undefined;
  const major = Number(field('redis_version')?.split('.')[0]);
  if (valkey || !(major >= 8)) {
    const server = valkey ? `Valkey ${field('valkey_version') ?? ''}`.trim() : `Redis ${field('redis_version') ?? ''}`.trim();
    throw new UnsafeBackendError(
      'fsync-ack',
      `fsync needs appendfsync always on ${server} (this server has ${policy}): under everysec its WAITAOF acknowledges a write before the fsync (fixed in Redis 8.0)`,
    );
  }
}

/** A setting given both in the URL and as an option must agree: two sources would be two meanings. */
function once<T>(name: string, option: T | undefined, inUrl: T | undefined): T | undefined {
  if (option !== undefined && inUrl !== undefined && option !== inUrl) {
    throw new InvalidArgumentError(`${name} is given both in the URL and as an option, with different values; give it once`);
  }
  return option ?? inUrl;
}
