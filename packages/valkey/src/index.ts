import { createHash } from 'node:crypto';
import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis } from 'ioredis';
import {
  BackendUnavailableError,
  CorruptRecordError,
  decideFinish,
  DueQueue,
  IdempotencyStore,
  InvalidArgumentError,
  InvalidStoreUrlError,
  isExpired,
  KeyReuseError,
  LeaseLostError,
  leaseOf,
  parseRecord,
  RECORD_VERSION,
  resolveStoreOptions,
  STORAGE_NAME,
  validateDuration,
  type ClaimInput,
  type ClaimOutcome,
  type CorruptEntry,
  type Driver,
  type FinishOp,
  type FinishValue,
  type IdemRecord,
  type Lease,
  type ListPage,
  type ListQuery,
  type StoreOptions,
} from '@idem/core/adapter';
import { CLAIM_LUA, FINISH_LUA, READ_LUA, REMOVE_LUA } from './lua.js';
import { fromNodeRedis, isNodeRedis, type NodeRedisClient } from './node-redis.js';
import { parse as parseUrl, type ValkeyUrlConfig } from './url.js';

export type { NodeRedisClient } from './node-redis.js';

type Arg = string | number | Buffer;
/** A script's answer: a tag, then record JSON (or a reason), nil when absent. */
type ScriptReply = [string, (string | null)?, (string | null)?];
/** A script waiting for the end of the tick, to go out with the others of its connection and their one WAIT. */
interface AckedScript {
  command: 'EVALSHA' | 'EVAL';
  body: string;
  key: string;
  args: Arg[];
  resolve(reply: unknown): void;
  reject(error: unknown): void;
}

/**
 * What the store needs of a client: ioredis `Redis` or `Cluster`, or a
 * compatible client such as iovalkey. Typed structurally so that another
 * copy of ioredis (or a fork) is accepted too.
 */
export interface ValkeyClient {
  call(command: string, ...args: Arg[]): Promise<unknown>;
  callBuffer(command: string, ...args: Arg[]): Promise<unknown>;
  /** Used instead of callBuffer when present (ioredis, iovalkey): see evalsha below. */
  evalshaBuffer?(sha: string, numKeys: number, ...args: Arg[]): Promise<unknown>;
  evalBuffer?(script: string, numKeys: number, ...args: Arg[]): Promise<unknown>;
  quit(): Promise<unknown>;
  /** Present on a Cluster: the master nodes `list` scans. */
  nodes?(role: 'master'): ValkeyClient[];
  /** Needed with minReplicas: WAIT travels in the same pipeline (round trip, and node) as the script. */
  pipeline?(): ValkeyPipeline;
  /** Present on a Cluster: asked after a MOVED reply inside a pipeline, which ioredis does not follow itself. */
  refreshSlotsCache?(): void;
  /** Present on a Cluster (ioredis): slot -> ["host:port" of its master, then its replicas], to share one WAIT per master. */
  slots?: string[][];
  isCluster?: boolean;
  /** The connection's socket (ioredis, iovalkey): corked for the rest of a tick, see ValkeyDriver.cork. */
  stream?: { cork(): void; uncork(): void };
  // `| undefined`: ioredis declares it so, and callers may compile with exactOptionalPropertyTypes.
  options?: { keyPrefix?: string | undefined };
}

/** The part of an ioredis pipeline the store uses. */
export interface ValkeyPipeline {
  call(command: string, ...args: Arg[]): ValkeyPipeline;
  exec(): Promise<Array<[Error | null, unknown]> | null>;
}

export interface ValkeyStoreOptions extends StoreOptions {
  /**
   * Your connected client (ioredis Redis or Cluster, iovalkey, or a node-redis `createClient()` of
   * redis / @redis/client 5 or 6). You close it; `store.close()` does not.
   */
  client?: ValkeyClient | NodeRedisClient;
  /**
   * Or a URL (redis://, rediss://, valkey://, valkeys://, or redis+sentinel:// / valkey+sentinel://
   * `[user:password@]host:port,host:port/masterName[/db]`): the store opens and closes its own client.
   * `?minReplicas=N&replicaTimeoutMs=T` in the query set the options below.
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
  /** How long WAIT may wait for the replicas; below timeoutMs. Default min(1000, timeoutMs / 2). */
  replicaTimeoutMs?: number;
}

/** The namespace when neither the URL nor the options give one. */
const DEFAULT_PREFIX = 'idem:';
const DEFAULT_LINGER_MS = 3600_000;
const DEFAULT_TIMEOUT_MS = 5_000;
const SCAN_COUNT = 256;

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
    ...storeOptions
  } = options ?? ({} as ValkeyStoreOptions);
  const sources = [client, url, cluster].filter((x) => x !== undefined).length;
  if (sources !== 1) throw new InvalidArgumentError('give exactly one of client, url or cluster');
  if (prefixOption !== undefined && (typeof prefixOption !== 'string' || /[{}]/.test(prefixOption))) throw new InvalidArgumentError('prefix must be a string without { or } (the store sets hash tags itself)');
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
  const resolved = resolveStoreOptions(storeOptions); // bad options fail before any connection is made
  let given: ValkeyClient | undefined;
  if (client !== undefined) {
    if (typeof client !== 'object' || client === null) throw new InvalidArgumentError('client must be an ioredis-compatible Redis or Cluster, or a node-redis client');
    // node-redis (sendCommand, no call): wrapped in a ValkeyClient; its own kinds refused there.
    given = isNodeRedis(client) ? fromNodeRedis(client) : (client as ValkeyClient);
    if (typeof given.call !== 'function') throw new InvalidArgumentError('client must be an ioredis-compatible Redis or Cluster, or a node-redis client');
    // ioredis prefixes command keys but not SCAN results: list would then read the wrong keys.
    if (given.options?.keyPrefix) throw new InvalidArgumentError('client has keyPrefix set: use the store option prefix instead');
  }
  if (minReplicas > 0 && given !== undefined && typeof given.pipeline !== 'function') throw new InvalidArgumentError('minReplicas needs a client with pipeline() (ioredis Redis or Cluster, or node-redis)');
  const guard: Guard = {};
  const owned = given === undefined ? openClient(fromUrl, cluster, timeoutMs, guard) : undefined;
  const driver = new ValkeyDriver(given ?? owned!, owned !== undefined, guard, { prefix, lingerMs, timeoutMs, minReplicas, replicaTimeoutMs });
  return new IdempotencyStore(driver, resolved);
}

/** A setting given both in the URL and as an option must agree: two sources would be two meanings. */
function once<T>(name: string, option: T | undefined, inUrl: T | undefined): T | undefined {
  if (option !== undefined && inUrl !== undefined && option !== inUrl) {
    throw new InvalidArgumentError(`${name} is given both in the URL and as an option, with different values; give it once`);
  }
  return option ?? inUrl;
}

/** What the connection learnt that makes every operation fail: a database the server does not have. */
interface Guard {
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
    // see Deadlines), and ioredis's would arm and clear a timer per command, 5-8 % of a first
    // execution at 64 in flight. A reply that never comes fails the operation at timeoutMs either way.
    // Reconnect quickly, so a failover (a new primary) is found within a second.
    retryStrategy: (times: number) => Math.min(times * 50, 500),
    // A primary demoted to replica answers READONLY: reconnect (Sentinel then names the new primary) and resend.
    reconnectOnError: (error: Error) => (error.message.startsWith('READONLY') ? 2 : false),
  } as const;
}

function openClient(target: ValkeyUrlConfig | undefined, cluster: string[] | undefined, timeoutMs: number, guard: Guard): ValkeyClient {
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
    if (!Array.isArray(seeds) || seeds.length === 0 || !seeds.every((s) => typeof s === 'string')) throw new InvalidArgumentError('cluster must be a non-empty list of "host:port"');
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
    guard.fatal = new InvalidStoreUrlError(`the server refused the URL's database index (${error.message}); stores on one server share nothing only through their prefix`, error);
    c.disconnect();
  });
  return c as unknown as ValkeyClient;
}

interface Settings {
  prefix: string;
  lingerMs: number;
  timeoutMs: number;
  minReplicas: number;
  replicaTimeoutMs: number;
}

class ValkeyDriver implements Driver {
  readonly capabilities = { nativeExpiry: true, clock: 'server', sharedAcrossProcesses: true } as const;
  private readonly claimSha = sha1(CLAIM_LUA);
  private readonly finishSha = sha1(FINISH_LUA);
  private readonly removeSha = sha1(REMOVE_LUA);
  private readonly readSha = sha1(READ_LUA);
  private readonly deadlines: Deadlines;
  /** An end of tick is scheduled (sockets corked, acknowledged scripts gathered until then). */
  private tickPending = false;
  /** With minReplicas: this tick's scripts, per connection ('' standalone, the slot's node list on a Cluster). */
  private acked = new Map<string | symbol, AckedScript[]>();

  constructor(
    private readonly client: ValkeyClient,
    private readonly owned: boolean,
    private readonly guard: Guard,
    private readonly settings: Settings,
  ) {
    this.deadlines = new Deadlines(settings.timeoutMs);
  }

  // The digest is the hash tag: a record's slot depends on its key alone, whatever the prefix.
  private recordKey = (name: string) => `${this.settings.prefix}{${name}}`;

  async claim(input: ClaimInput): Promise<ClaimOutcome> {
    const rk = this.recordKey(input.name);
    // The record's constant part is encoded here (JSON.stringify), so the script only appends numbers.
    const head = `{"v":${RECORD_VERSION},"key":${JSON.stringify(input.recordKey)},"status":"in_flight","runId":${JSON.stringify(input.runId)},"fence":`;
    const fpPart = input.fingerprint !== undefined ? `,"fingerprint":${JSON.stringify(input.fingerprint)}` : '';
    const args = [head, fpPart, input.fingerprint ?? '', input.runId, input.leaseMs, this.settings.lingerMs, input.force ? '1' : '0', input.dedupOn];
    const reply = ValkeyDriver.scriptReply(await this.evalScript(CLAIM_LUA, this.claimSha, rk, args, false, true));
    if (typeof reply === 'number') {
      // The fast path (SET NX on a key with no trace): the record is the one we sent, stamped with the server's time.
      const record: IdemRecord = {
        v: RECORD_VERSION,
        key: input.recordKey,
        status: 'in_flight',
        runId: input.runId,
        fence: reply,
        attempt: 1,
        ...(input.fingerprint !== undefined ? { fingerprint: input.fingerprint } : {}),
        claimedAt: reply,
        leaseExpiresAt: reply + input.leaseMs,
      };
      // The stored bytes, as the script built them: the lease's version, for the finish's fast path.
      const at = String(reply); // converted once: a 13-digit number's text is not cheap
      const raw = `${head}${at},"attempt":1${fpPart},"claimedAt":${at},"leaseExpiresAt":${reply + input.leaseMs}}`;
      return { outcome: 'acquired', lease: leaseOf(input.key, input.name, record, raw) };
    }
    const [tag, a, b] = reply;
    switch (tag) {
      case 'acquired':
      case 'adopted': {
        const lease = this.leaseFrom(input.key, input.name, rk, a!);
        const previous = b ? parseRecord(rk, b) : undefined;
        if (tag === 'adopted') return { outcome: tag, lease, previous: previous! };
        return previous ? { outcome: tag, lease, previous } : { outcome: tag, lease };
      }
      // Our own claim found again on a retry: the first attempt landed but its reply was lost.
      case 'own':
        return { outcome: 'acquired', lease: this.leaseFrom(input.key, input.name, rk, a!) };
      case 'in_flight':
      case 'completed':
        return { outcome: tag, record: parseRecord(rk, a!) };
      case 'reuse':
        throw new KeyReuseError(parseRecord(rk, a!), input.fingerprint!);
      default:
        throw this.corrupt(rk, a);
    }
  }

  /** A lease on stored bytes: its version is those bytes when the record can take the finish's fast path. */
  private leaseFrom(key: string, name: string, rk: string, raw: string): Lease {
    const record = parseRecord(rk, raw);
    return leaseOf(key, name, record, record.status === 'in_flight' && record.expiresAt === undefined ? raw : undefined);
  }

  async finish(lease: Lease, op: FinishOp): Promise<FinishValue> {
    const rk = this.recordKey(lease.name);
    const retentionMs = op.op === 'complete' || op.op === 'fail' ? op.retentionMs : 0; // only a finish starts retention
    const payload = op.op === 'complete' && op.result !== undefined ? JSON.stringify(op.result) : op.op === 'fail' && op.error !== undefined ? JSON.stringify(op.error) : '';
    // complete and fail: the finished record is made here from the bytes the lease holds, and the
    // script writes it only if the key still holds exactly those bytes (see FINISH_LUA).
    const fast = op.op === 'complete' || op.op === 'fail' ? finishedParts(lease, op.op === 'complete' ? 'succeeded' : 'failed', payload ? `,"${op.op === 'complete' ? 'result' : 'error'}":${payload}}` : '}') : undefined;
    const leaseMs = op.op === 'renew' ? op.leaseMs : 0;
    const args = [op.op, lease.runId, lease.fence, leaseMs, retentionMs, this.settings.lingerMs, payload, fast ? lease.version! : '', fast?.[0] ?? '', fast?.[1] ?? ''];
    const reply = ValkeyDriver.scriptReply(await this.evalScript(FINISH_LUA, this.finishSha, rk, args, false, true));
    if (typeof reply === 'number') {
      if (!fast || (op.op !== 'complete' && op.op !== 'fail')) throw new BackendUnavailableError(`unexpected finish reply ${reply}`);
      // The record the script wrote: the lease's, finished by core's decision at the server's time `reply`.
      return { record: decideFinish(lease.record, lease, op, reply).value.record! };
    }
    const [tag, a] = reply;
    if (tag === 'lost') throw new LeaseLostError(lease.key, a ? parseRecord(rk, a) : undefined);
    if (tag !== 'ok') throw this.corrupt(rk, a);
    if (!a) return {};
    if (op.op === 'renew') return { lease: this.leaseFrom(lease.key, lease.name, rk, a) };
    return { record: parseRecord(rk, a) };
  }

  /**
   * Records linger past their end (see lingerMs) and count as absent from
   * then on; that end is judged here by the server's clock, like every
   * other deadline of this store, so an expired record is never returned.
   */
  async read(name: string): Promise<IdemRecord | undefined> {
    return this.readKey(this.recordKey(name));
  }

  private async readKey(rk: string): Promise<IdemRecord | undefined> {
    const reply = (await this.evalScript(READ_LUA, this.readSha, rk, [], true, false)) as Buffer[];
    const tag = reply[0]?.toString();
    if (tag === 'none') return undefined;
    if (tag !== 'found') throw this.corrupt(rk, reply[1]?.toString());
    const record = parseRecord(this.nameOf(rk), reply[1]!);
    return isExpired(record, Number(reply[2]!.toString())) ? undefined : record;
  }

  /** SCAN over every master (one for standalone), in a fixed node order. */
  async list(query: ListQuery): Promise<ListPage> {
    const nodes = this.scanNodes();
    // The cursor carries the SCAN position and the names of its last batch not yet returned, so a
    // page never repeats a SCAN call: SCAN's own promise holds (a record present for the whole
    // listing is returned), and the listing ends however the keyspace changes meanwhile.
    let [node, scanCursor, pending] = decodeCursor(query.cursor);
    const pattern = `${globEscape(this.settings.prefix)}{*}`;
    const records: IdemRecord[] = [];
    const corrupt: CorruptEntry[] = [];
    const page = (cursor?: string): ListPage => ({ records, ...(corrupt.length > 0 ? { corrupt } : {}), ...(cursor !== undefined ? { cursor } : {}) });
    for (;;) {
      if (pending.length === 0) {
        if (node >= nodes.length) return page();
        const [next, keys] = (await this.op(() => nodes[node]!.call('SCAN', scanCursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT))) as [string, string[]];
        // Only storage names (sha256 hex), as on every scanning store; sorted so pages are stable.
        pending = keys.map((k) => k.slice(this.settings.prefix.length + 1, -1)).filter((name) => STORAGE_NAME.test(name)).sort();
        if (next === '0') [node, scanCursor] = [node + 1, '0'];
        else scanCursor = next;
      }
      // A corrupt record is named (by its storage name) and the listing goes on: one hides no other.
      const found = await Promise.all(
        pending.map((name) =>
          this.readKey(this.recordKey(name)).catch((error: unknown) => {
            if (!(error instanceof CorruptRecordError)) throw error;
            return { name, reason: error.message };
          }),
        ),
      );
      for (const [i, record] of found.entries()) {
        if (records.length === query.limit) return page(`${node}:${scanCursor}:${pending.slice(i).join(',')}`);
        if (record !== undefined && 'reason' in record) corrupt.push(record);
        else if (record !== undefined && query.filter(record)) records.push(record);
      }
      pending = [];
    }
  }

  /** Never called (nativeExpiry): Valkey removes records when their PX runs out. */
  async sweep() {
    return { expired: 0, deadLeases: 0 };
  }

  /** Ends the record at once (it lingers to hand its fence on); a foreign or corrupt value is deleted. */
  async remove(name: string): Promise<boolean> {
    const reply = await this.evalScript(REMOVE_LUA, this.removeSha, this.recordKey(name), [this.settings.lingerMs], false, true);
    return reply === 1;
  }

  async writeRaw(name: string, bytes: string | Uint8Array): Promise<void> {
    await this.op(() => this.client.call('SET', this.recordKey(name), typeof bytes === 'string' ? bytes : Buffer.from(bytes)));
  }

  async close(): Promise<void> {
    if (!this.owned) return;
    const c = this.client as ValkeyClient & { status?: string; disconnect?(): void };
    // QUIT is queued while the server is down, and would wait for it for ever: only a live connection says goodbye.
    if (c.status !== 'ready' && typeof c.disconnect === 'function') return c.disconnect();
    try {
      await within(this.client.quit(), this.settings.timeoutMs);
    } catch (error) {
      // Already disconnected (server gone) or no answer in time: nothing left to close but the socket.
      if (!(error instanceof Error)) throw error;
      c.disconnect?.();
    }
  }

  private scanNodes(): ValkeyClient[] {
    if (!this.client.isCluster || !this.client.nodes) return [this.client];
    // A stable order, so that a cursor's node index means the same node on the next page.
    const key = (c: ValkeyClient) => {
      const o = (c as { options?: { host?: string; port?: number } }).options;
      return `${o?.host}:${o?.port}`;
    };
    return [...this.client.nodes('master')].sort((x, y) => (key(x) < key(y) ? -1 : 1));
  }

  /** Named by its storage name (sha256 hex), the same form on every backend, not by the Valkey key. */
  private corrupt(rk: string, why: unknown): CorruptRecordError {
    return new CorruptRecordError(this.nameOf(rk), typeof why === 'string' ? why : 'unreadable');
  }

  private nameOf(rk: string): string {
    return rk.slice(this.settings.prefix.length + 1, -1);
  }

  /** A claim's or finish's reply, checked: a server time (their fast paths), or a tag and records. */
  private static scriptReply(reply: unknown): ScriptReply | number {
    if (typeof reply === 'number' && Number.isSafeInteger(reply) && reply > 0) return reply;
    const ok = Array.isArray(reply) && typeof reply[0] === 'string' && reply.slice(1).every((x) => x == null || typeof x === 'string');
    if (!ok) throw new BackendUnavailableError(`unexpected script reply ${JSON.stringify(reply)?.slice(0, 100)}: is this Valkey/Redis 7?`);
    return reply as ScriptReply;
  }

  /**
   * Holds the socket's writes until the current burst of JS is over (process.nextTick runs after the
   * microtasks queued so far), so that the commands of every call resumed by one read of replies go
   * out in one write (writev) instead of one system call each, as node-redis does. At 64 calls in
   * flight this is most of the client's CPU per command; at 1 in flight the write waits for no
   * timer, only for the end of the current tick. ioredis's enableAutoPipelining batches too, but
   * builds a Pipeline per tick and waits for setImmediate: slower at every depth (see the README).
   * A Cluster's master sockets are all corked (commands go to the node of their slot).
   * At the end of the tick, before the sockets let go, the scripts waiting for replica
   * acknowledgement go out with their shared WAIT (see sendAcked): in the same write.
   */
  private cork(): void {
    if (this.tickPending) return;
    this.tickPending = true;
    const c = this.client;
    const streams = c.isCluster ? (c.nodes?.('master') ?? []).map((n) => n.stream) : [c.stream];
    const held = streams.filter((s): s is NonNullable<ValkeyClient['stream']> => typeof s?.cork === 'function' && typeof s.uncork === 'function');
    for (const s of held) s.cork();
    process.nextTick(() => {
      this.tickPending = false;
      const batches = this.acked;
      if (batches.size > 0) {
        this.acked = new Map();
        for (const batch of batches.values()) this.sendAcked(batch);
      }
      for (const s of held) s.uncork();
    });
  }

  /**
   * Sends a script once. `buffers`: replies as raw bytes, so that a record that is not UTF-8 is
   * seen as it is stored. `writes`: with minReplicas, the script waits for the end of the tick, to
   * go out with the others of its connection and their one WAIT (see queueAcked).
   */
  private sendScript(command: 'EVALSHA' | 'EVAL', body: string, key: string, args: Arg[], buffers: boolean, writes: boolean): Promise<unknown> {
    if (writes && this.settings.minReplicas > 0) return this.queueAcked(command, body, key, args);
    this.cork();
    const c = this.client;
    if (!buffers) return c.call(command, body, 1, key, ...args);
    // Bytes through evalshaBuffer where the client has it: ioredis's auto-pipelining drops the
    // command name of a callBuffer (it sends the SHA as the command), but not of evalshaBuffer.
    const bytes = command === 'EVALSHA' ? c.evalshaBuffer : c.evalBuffer;
    return bytes ? bytes.call(c, body, 1, key, ...args) : c.callBuffer(command, body, 1, key, ...args);
  }

  /**
   * With minReplicas, a writing script joins this tick's batch for its connection, and settles
   * with its own reply once the batch's WAIT is in. The batch goes out as its scripts, then WAIT
   * for the replicas, in one pipeline: one round trip, and on a Cluster the same node (the
   * pipeline goes where its keys live; WAIT has no key). WAIT counts the replicas
   * that hold every write this connection made before it, so one WAIT after the scripts of a tick
   * covers them all: a client blocked in WAIT has its next commands held until WAIT returns, so a
   * WAIT per script would serialise the operations in flight, one replica round trip each. A
   * script that wrote nothing (a duplicate, or a retry that finds its own earlier write) rewrites
   * its record first (see lua.ts): its connection may be a new one, whose last write is not the
   * one that matters.
   *
   * Timeline: t0 the tick's scripts run and write on the primary, in order; t1 WAIT returns the
   * replicas that hold all of them. Only after t1 with enough replicas is any outcome returned: a
   * failover after t1 promotes a replica that holds it (a copy in memory, not on disk: see the README).
   */
  private queueAcked(command: 'EVALSHA' | 'EVAL', body: string, key: string, args: Arg[]): Promise<unknown> {
    this.cork();
    const conn = this.connectionOf(key);
    return new Promise((resolve, reject) => {
      const entry: AckedScript = { command, body, key, args, resolve, reject };
      const batch = conn === undefined ? undefined : this.acked.get(conn);
      if (batch) batch.push(entry);
      // A key whose master is not known yet (a Cluster before its slots): a batch of its own.
      else this.acked.set(conn ?? Symbol('unrouted'), [entry]);
    });
  }

  /**
   * The connection a key's script goes to: the only one of a Redis client (Sentinel too), the
   * master of its slot on a Cluster, named by the slot's node list as ioredis groups slots (its
   * pipeline refuses keys of two groups), undefined when its map does not know the slot yet.
   */
  private connectionOf(key: string): string | undefined {
    const c = this.client;
    if (!c.isCluster) return '';
    // The slot as ioredis computes it (the same module), hash tag included: its grouping is the one to match.
    return c.slots?.[calculateSlot(key)]?.join(';') || undefined;
  }

  /** Sends one batch: its scripts, then one WAIT; each script's caller gets its own reply or error, or the WAIT's failure. */
  private sendAcked(batch: AckedScript[]): void {
    const fail = (error: unknown) => {
      for (const e of batch) e.reject(error);
    };
    let results: Promise<Array<[Error | null, unknown]> | null>;
    // One pipeline, not a command each: should the connection drop after some of its replies, ioredis
    // fails the rest of it (the WAIT) instead of resending it alone on a new connection, where it
    // would count no write of ours and so acknowledge at once.
    try {
      const p = this.client.pipeline!();
      for (const e of batch) p.call(e.command, e.body, 1, e.key, ...e.args);
      results = p.call('WAIT', this.settings.minReplicas, this.settings.replicaTimeoutMs).exec();
    } catch (error) {
      // A client that refuses the pipeline at once (closed): every operation of it fails, and may retry.
      return fail(error);
    }
    results.then((replies) => {
      if (!replies || replies.length !== batch.length + 1) return fail(new Error('pipeline aborted'));
      const [waitError, acked] = replies[batch.length]!;
      const short = waitError ?? (typeof acked !== 'number' || acked < this.settings.minReplicas ? new Error(`${String(acked)} of ${this.settings.minReplicas} replicas acknowledged the write within ${this.settings.replicaTimeoutMs} ms`) : undefined);
      let moved = false;
      batch.forEach((e, i) => {
        const [scriptError, reply] = replies[i]!;
        // ioredis follows MOVED/ASK inside a pipeline only when every command is read-only (WAIT is not).
        if (scriptError && /^(MOVED|ASK) /.test(scriptError.message)) moved = true;
        if (scriptError) e.reject(scriptError);
        else if (short) e.reject(short);
        else e.resolve(reply);
      });
      if (moved) this.client.refreshSlotsCache?.();
    }, fail);
  }

  /**
   * Runs a script by its SHA1 (one round trip); after NOSCRIPT (the server restarted or flushed
   * its cache) sends the body, which loads it. Bounded by timeoutMs, every failure mapped to
   * BACKEND_UNAVAILABLE. Transport failures are retried with the same arguments inside the
   * budget: each script recognises its own earlier write (same runId and fence), so a retry after
   * a lost reply never reports someone else's claim. One async function from send to reply: a
   * layer each for the retries, the script cache and the bound cost a promise each, a measurable
   * share of a first execution's client CPU.
   */
  private async evalScript(lua: string, sha: string, key: string, args: Arg[], buffers: boolean, writes: boolean): Promise<unknown> {
    const deadline = Date.now() + this.settings.timeoutMs;
    let command: 'EVALSHA' | 'EVAL' = 'EVALSHA';
    let first: string | undefined;
    for (let attempt = 0; ; attempt++) {
      if (this.guard.fatal) throw this.guard.fatal;
      try {
        const sent = this.sendScript(command, command === 'EVALSHA' ? sha : lua, key, args, buffers, writes);
        // Every attempt is bounded by what is left of the budget, so a retry late in it cannot overrun
        // it (a per-command timeout counting from each send once took 7 s for 5 s).
        // The first attempt shares one timer with every other first attempt (see Deadlines).
        return await (attempt === 0 ? this.deadlines.bound(sent) : within(sent, Math.max(1, deadline - Date.now())));
      } catch (error) {
        // Not loaded: the body next, at once (in a later batch with its own WAIT under minReplicas).
        if (command === 'EVALSHA' && error instanceof Error && error.message.startsWith('NOSCRIPT')) {
          command = 'EVAL';
          continue;
        }
        first ??= describe(error);
        await new Promise((r) => setTimeout(r, this.pauseAfter(error, attempt, deadline, first!, true)));
      }
    }
  }

  /** Bounds one command by timeoutMs and maps its failure to BACKEND_UNAVAILABLE (SCAN, and writeRaw for the tests). */
  private async op<T>(fn: () => Promise<T>): Promise<T> {
    if (this.guard.fatal) throw this.guard.fatal;
    try {
      return await this.deadlines.bound(fn());
    } catch (error) {
      this.pauseAfter(error, 0, 0, describe(error), false); // throws: a command alone is not retried
      throw error;
    }
  }

  /**
   * After a failed attempt: the pause before the next one. Throws BACKEND_UNAVAILABLE instead when
   * there is to be no retry, or no budget left for one after the pause (10 ms at least, to be worth sending).
   */
  private pauseAfter(error: unknown, attempt: number, deadline: number, first: string, retry: boolean): number {
    if (this.guard.fatal) throw this.guard.fatal;
    // A slot moved (resharding, failover): ioredis follows MOVED by itself only outside a
    // pipeline, and auto-pipelining puts every command in one. Learn the new map, then retry.
    if (error instanceof Error && /^(MOVED|ASK) /.test(error.message)) this.client.refreshSlotsCache?.();
    const pause = Math.min(50 * 2 ** attempt, deadline - Date.now() - 10);
    if (!retry || pause < 0) {
      const why = describe(error);
      // The first failure usually says why (server down, too few replicas); the last one may only be the budget running out.
      throw new BackendUnavailableError(`Valkey/Redis unavailable: ${why}${why !== first ? ` (first attempt: ${first})` : ''}`, error);
    }
    return pause;
  }
}

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * The time bound of every first attempt, with one timer per store instead of one per operation
 * (a timer and a Promise.race per call cost more client CPU than the rest of a claim's JS). First
 * attempts all get the same budget, so their deadlines come in the order they were queued: the
 * timer only ever needs the oldest one still pending, and a settled operation at the head is
 * dropped at once, so the queue holds no more than what is in flight. The monotonic clock keeps
 * that order, and the budget, whatever the wall clock does.
 */
class Deadlines {
  private readonly queue = new DueQueue<{ at: number; reject: (error: Error) => void; done: boolean }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly budgetMs: number) {}

  /** `promise`, or a rejection once the budget has run out (counted on the monotonic clock). */
  bound<T>(promise: Promise<T>): Promise<T> {
    const at = performance.now() + this.budgetMs;
    return new Promise<T>((resolve, reject) => {
      const entry = { at, reject, done: false };
      this.queue.push(entry);
      this.timer ??= this.arm(at);
      promise.then(
        (value) => {
          entry.done = true;
          this.trim();
          resolve(value);
        },
        (error: unknown) => {
          entry.done = true;
          this.trim();
          reject(error);
        },
      );
    });
  }

  private arm(at: number): NodeJS.Timeout {
    // Not unref'd, as one timer per operation was not: a pending operation keeps the process up until it ends.
    return setTimeout(() => this.fire(), Math.max(1, Math.ceil(at - performance.now())));
  }

  private trim(): void {
    // Nothing pending: no timer either, so that an idle store never holds the process up.
    if (this.queue.trim()) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private fire(): void {
    this.timer = undefined;
    const now = performance.now();
    for (let entry = this.queue.first(); entry !== undefined && entry.at <= now; entry = this.queue.first()) {
      entry.done = true;
      entry.reject(new Error(`no reply within ${this.budgetMs} ms`));
    }
    const next = this.queue.first();
    if (next !== undefined) this.timer = this.arm(next.at);
  }
}

async function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no reply within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The finished record around its two server times, made from the in_flight bytes the lease holds
 * (`version`): `"status":"in_flight"` becomes the final status, and everything from
 * `,"leaseExpiresAt":` on gives way to completedAt, expiresAt and the tail. Both markers are
 * found at their field: inside a JSON string a quote is always escaped, so neither can occur there.
 * Undefined when the lease carries no such bytes (a lease from an older release, or made by hand).
 */
function finishedParts(lease: Lease, status: 'succeeded' | 'failed', tail: string): [string, string] | undefined {
  const raw = lease.version;
  if (typeof raw !== 'string') return undefined;
  const s = raw.indexOf(IN_FLIGHT);
  const e = raw.lastIndexOf(LEASE_FIELD);
  if (s < 0 || e < s || !leaseEndAt(raw, e)) return undefined;
  return [`${raw.slice(0, s)}"status":"${status}"${raw.slice(s + IN_FLIGHT.length, e)},"completedAt":`, tail];
}

const IN_FLIGHT = '"status":"in_flight"';
const LEASE_FIELD = ',"leaseExpiresAt":';

/** True when `raw` ends with `,"leaseExpiresAt":<digits>}` from `at` on (a loop: a regex on a slice costs more). */
function leaseEndAt(raw: string, at: number): boolean {
  const last = raw.length - 1;
  if (last <= at + LEASE_FIELD.length || raw.charCodeAt(last) !== 0x7d) return false; // '}'
  for (let i = at + LEASE_FIELD.length; i < last; i++) {
    const c = raw.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false; // '0'..'9'
  }
  return true;
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

/** node:scanCursor:name,name,... (the rest of the SCAN batch, in order). */
function decodeCursor(cursor: string | undefined): [number, string, string[]] {
  if (cursor === undefined) return [0, '0', []];
  const m = /^(\d+):(\d+):((?:[0-9a-f]{64}(?:,[0-9a-f]{64})*)?)$/.exec(cursor);
  if (!m) throw new InvalidArgumentError('cursor must be a string from a previous page');
  return [Number(m[1]), m[2]!, m[3] ? m[3].split(',') : []];
}

function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
