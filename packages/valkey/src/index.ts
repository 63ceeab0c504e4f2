import { createHash } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import {
  BackendUnavailableError,
  CorruptRecordError,
  IdempotencyStore,
  InvalidArgumentError,
  isExpired,
  KeyReuseError,
  LeaseLostError,
  leaseOf,
  parseRecord,
  resolveStoreOptions,
  sha256Hex,
  validateDuration,
  type ClaimInput,
  type ClaimOutcome,
  type Driver,
  type FinishOp,
  type FinishValue,
  type IdemRecord,
  type Lease,
  type ListPage,
  type ListQuery,
  type StoreOptions,
} from '@idem/core';
import { CLAIM_LUA, FINISH_LUA, READ_LUA, REMOVE_LUA } from './lua.js';

type Arg = string | number | Buffer;
/** A script's answer: a tag, then record JSON (or a reason), nil when absent. */
type ScriptReply = [string, (string | null)?, (string | null)?];

/**
 * What the store needs of a client: ioredis `Redis` or `Cluster`, or a
 * compatible client such as iovalkey. Typed structurally so that another
 * copy of ioredis (or a fork) is accepted too.
 */
export interface ValkeyClient {
  call(command: string, ...args: Arg[]): Promise<unknown>;
  callBuffer(command: string, ...args: Arg[]): Promise<unknown>;
  quit(): Promise<unknown>;
  /** Present on a Cluster: the master nodes `list` scans. */
  nodes?(role: 'master'): ValkeyClient[];
  isCluster?: boolean;
  // `| undefined`: ioredis declares it so, and callers may compile with exactOptionalPropertyTypes.
  options?: { keyPrefix?: string | undefined };
}

export interface ValkeyStoreOptions extends StoreOptions {
  /** Your connected client (Redis, Cluster, iovalkey...). You close it; `store.close()` does not. */
  client?: ValkeyClient;
  /** Or a URL (redis://, rediss://, valkey://, valkeys://): the store opens and closes its own client. */
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
}

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
    prefix = DEFAULT_PREFIX,
    lingerMs = DEFAULT_LINGER_MS,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    ...storeOptions
  } = options ?? ({} as ValkeyStoreOptions);
  const sources = [client, url, cluster].filter((x) => x !== undefined).length;
  if (sources !== 1) throw new InvalidArgumentError('give exactly one of client, url or cluster');
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) throw new InvalidArgumentError('prefix must be a string without { or } (the store sets hash tags itself)');
  validateDuration('lingerMs', lingerMs);
  validateDuration('timeoutMs', timeoutMs);
  resolveStoreOptions(storeOptions); // bad options fail before any connection is made
  if (client !== undefined) {
    if (typeof client !== 'object' || client === null || typeof client.call !== 'function') throw new InvalidArgumentError('client must be an ioredis-compatible Redis or Cluster');
    // ioredis prefixes command keys but not SCAN results: list would then read the wrong keys.
    if (client.options?.keyPrefix) throw new InvalidArgumentError('client has keyPrefix set: use the store option prefix instead');
  }
  const owned = client === undefined ? openClient(url, cluster, timeoutMs) : undefined;
  // Only a standalone client we opened bounds every command itself (commandTimeout); a Cluster
  // queues commands while it (re)discovers its nodes, and a caller's client may queue for a minute.
  const selfBounded = owned !== undefined && url !== undefined;
  const driver = new ValkeyDriver(client ?? owned!, owned !== undefined, selfBounded, { prefix, lingerMs, timeoutMs });
  return new IdempotencyStore(driver, storeOptions);
}

function openClient(url: string | undefined, cluster: string[] | undefined, timeoutMs: number): ValkeyClient {
  // Fail fast: ioredis's defaults queue a command through 20 reconnects (over a minute) when the server is down.
  const common = { maxRetriesPerRequest: 1, connectTimeout: timeoutMs, commandTimeout: timeoutMs };
  const parse = (text: string) => {
    try {
      return new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text.replace(/^valkey(s?):/i, 'redis$1:') : `redis://${text}`);
    } catch (cause) {
      throw new InvalidArgumentError(`not a server address: ${JSON.stringify(text)}`, cause);
    }
  };
  let c: Redis | Cluster;
  if (url !== undefined) {
    if (typeof url !== 'string' || !/^(redis|rediss|valkey|valkeys):\/\//i.test(url)) throw new InvalidArgumentError('url must start with redis://, rediss://, valkey:// or valkeys://');
    const u = parse(url);
    c = new Redis(u.href, common);
  } else {
    if (!Array.isArray(cluster) || cluster.length === 0 || !cluster.every((s) => typeof s === 'string')) throw new InvalidArgumentError('cluster must be a non-empty list of "host:port"');
    const seeds = cluster.map(parse);
    const first = seeds[0]!;
    c = new Cluster(
      seeds.map((u) => ({ host: u.hostname, port: Number(u.port || 6379) })),
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
  c.on('error', () => undefined);
  return c as unknown as ValkeyClient;
}

interface Settings {
  prefix: string;
  lingerMs: number;
  timeoutMs: number;
}

class ValkeyDriver implements Driver {
  readonly capabilities = { nativeExpiry: true, clock: 'server', sharedAcrossProcesses: true } as const;
  private readonly claimSha = sha1(CLAIM_LUA);
  private readonly finishSha = sha1(FINISH_LUA);
  private readonly removeSha = sha1(REMOVE_LUA);
  private readonly readSha = sha1(READ_LUA);

  constructor(
    private readonly client: ValkeyClient,
    private readonly owned: boolean,
    private readonly selfBounded: boolean,
    private readonly s: Settings,
  ) {}

  // The digest is the hash tag: a record's slot depends on its key alone, whatever the prefix.
  private recordKey = (name: string) => `${this.s.prefix}{${name}}`;

  async claim(input: ClaimInput): Promise<ClaimOutcome> {
    const rk = this.recordKey(input.name);
    // The record's constant part is encoded here (JSON.stringify), so the script only appends numbers.
    const head = `{"v":1,"key":${JSON.stringify(input.recordKey)},"status":"in_flight","runId":${JSON.stringify(input.runId)},"fence":`;
    const reply = await this.script(CLAIM_LUA, this.claimSha, rk, [
      head,
      input.fingerprint !== undefined ? `,"fingerprint":${JSON.stringify(input.fingerprint)}` : '',
      input.fingerprint ?? '',
      input.runId,
      input.leaseMs,
      this.s.lingerMs,
      input.force ? '1' : '0',
      input.dedupOn,
    ]);
    if (typeof reply === 'number') {
      // The fast path (SET NX on a key with no trace): the record is the one we sent, stamped with the server's time.
      const record: IdemRecord = {
        v: 1,
        key: input.recordKey,
        status: 'in_flight',
        runId: input.runId,
        fence: reply,
        attempt: 1,
        ...(input.fingerprint !== undefined ? { fingerprint: input.fingerprint } : {}),
        claimedAt: reply,
        leaseExpiresAt: reply + input.leaseMs,
      };
      return { outcome: 'acquired', lease: leaseOf(input.key, input.name, record) };
    }
    const [tag, a, b] = reply;
    switch (tag) {
      case 'acquired':
      case 'adopted': {
        const lease = leaseOf(input.key, input.name, parseRecord(rk, a!));
        const previous = b ? parseRecord(rk, b) : undefined;
        if (tag === 'adopted') return { outcome: tag, lease, previous: previous! };
        return previous ? { outcome: tag, lease, previous } : { outcome: tag, lease };
      }
      // Our own claim found again on a retry: the first attempt landed but its reply was lost.
      case 'own':
        return { outcome: 'acquired', lease: leaseOf(input.key, input.name, parseRecord(rk, a!)) };
      case 'in_flight':
      case 'completed':
        return { outcome: tag, record: parseRecord(rk, a!) };
      case 'reuse':
        throw new KeyReuseError(parseRecord(rk, a!), input.fingerprint!);
      default:
        throw this.corrupt(rk, a);
    }
  }

  async finish(lease: Lease, op: FinishOp, retentionMs: number): Promise<FinishValue> {
    const rk = this.recordKey(lease.name);
    const payload = op.op === 'complete' && op.result !== undefined ? JSON.stringify(op.result) : op.op === 'fail' && op.error !== undefined ? JSON.stringify(op.error) : '';
    const reply = await this.script(FINISH_LUA, this.finishSha, rk, [op.op, lease.runId, lease.fence, op.op === 'renew' ? op.leaseMs : 0, retentionMs, this.s.lingerMs, payload]);
    if (typeof reply === 'number') throw new BackendUnavailableError(`unexpected finish reply ${reply}`);
    const [tag, a] = reply;
    if (tag === 'lost') throw new LeaseLostError(lease.key, a ? parseRecord(rk, a) : undefined);
    if (tag !== 'ok') throw this.corrupt(rk, a);
    if (!a) return {};
    const record = parseRecord(rk, a);
    return op.op === 'renew' ? { lease: leaseOf(lease.key, lease.name, record) } : { record };
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
    const reply = (await this.op(() => this.evalsha(READ_LUA, this.readSha, rk, [], true), true)) as Buffer[];
    const tag = reply[0]?.toString();
    if (tag === 'none') return undefined;
    if (tag !== 'found') throw this.corrupt(rk, reply[1]?.toString());
    const record = parseRecord(rk, reply[1]!);
    return isExpired(record, Number(reply[2]!.toString())) ? undefined : record;
  }

  /**
   * SCAN over every master (one for standalone). A page may end inside a SCAN
   * batch, so the cursor holds node index, SCAN cursor, how many keys of the
   * sorted batch were returned, and a digest of that batch. Resuming re-runs
   * the same SCAN; if the keyspace was resized meanwhile the batch differs,
   * and the whole new batch is returned again: a record may repeat, none is
   * skipped (SCAN's guarantee: present for the whole listing, seen at least once).
   */
  async list(query: ListQuery): Promise<ListPage> {
    const nodes = this.scanNodes();
    let [node, scanCursor, skip, digest] = decodeCursor(query.cursor);
    const pattern = `${globEscape(this.s.prefix)}{*}`;
    const records: IdemRecord[] = [];
    while (node < nodes.length) {
      const [next, unsorted] = (await this.op(() => nodes[node]!.call('SCAN', scanCursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT))) as [string, string[]];
      const keys = unsorted.sort();
      const batch = batchDigest(keys);
      const from = batch === digest ? skip : 0;
      const found = await Promise.all(keys.slice(from).map((k) => this.readKey(k)));
      for (const [i, record] of found.entries()) {
        if (records.length === query.limit) return { records, cursor: `${node}:${scanCursor}:${from + i}:${batch}` };
        if (record !== undefined && query.filter(record)) records.push(record);
      }
      digest = '';
      if (next === '0') [node, scanCursor] = [node + 1, '0'];
      else scanCursor = next;
    }
    return { records };
  }

  /** Never called (nativeExpiry): Valkey removes records when their PX runs out. */
  async sweep() {
    return { expired: 0, deadLeases: 0 };
  }

  /** Ends the record at once (it lingers to hand its fence on); a foreign or corrupt value is deleted. */
  async remove(name: string): Promise<boolean> {
    const reply = await this.op(() => this.evalsha(REMOVE_LUA, this.removeSha, this.recordKey(name), [this.s.lingerMs]), true);
    return reply === 1;
  }

  async writeRaw(name: string, bytes: string | Uint8Array): Promise<void> {
    await this.op(() => this.client.call('SET', this.recordKey(name), typeof bytes === 'string' ? bytes : Buffer.from(bytes)));
  }

  async close(): Promise<void> {
    if (!this.owned) return;
    try {
      await this.client.quit();
    } catch (error) {
      // Already disconnected (server gone): nothing left to close.
      if (!(error instanceof Error)) throw error;
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

  private corrupt(rk: string, why: unknown): CorruptRecordError {
    return new CorruptRecordError(rk, typeof why === 'string' ? why : 'unreadable');
  }

  /**
   * Runs a script by its SHA1 (one round trip); after NOSCRIPT (the server
   * restarted or flushed its cache) sends the body once, which loads it.
   * Transport failures are retried with the same arguments inside the time
   * budget: both scripts recognise their own earlier write (same runId and
   * fence), so a retry after a lost reply never reports someone else's claim.
   */
  private async script(lua: string, sha: string, key: string, args: Arg[]): Promise<ScriptReply | number> {
    const reply = await this.op(() => this.evalsha(lua, sha, key, args), true);
    if (typeof reply === 'number' && Number.isSafeInteger(reply) && reply > 0) return reply;
    const ok = Array.isArray(reply) && typeof reply[0] === 'string' && reply.slice(1).every((x) => x == null || typeof x === 'string');
    if (!ok) throw new BackendUnavailableError(`unexpected script reply ${JSON.stringify(reply)?.slice(0, 100)}: is this Valkey/Redis 7?`);
    return reply as ScriptReply;
  }

  /** `buffers`: replies as raw bytes, so that a record that is not UTF-8 is seen as it is stored. */
  private async evalsha(lua: string, sha: string, key: string, args: Arg[], buffers = false): Promise<unknown> {
    const send = (buffers ? this.client.callBuffer : this.client.call).bind(this.client);
    try {
      return await send('EVALSHA', sha, 1, key, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return send('EVAL', lua, 1, key, ...args);
    }
  }

  /** Bounds an operation by timeoutMs and maps every failure to BACKEND_UNAVAILABLE; `retry` repeats it within that bound. */
  private async op<T>(fn: () => Promise<T>, retry = false): Promise<T> {
    const deadline = Date.now() + this.s.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await (this.selfBounded ? fn() : within(fn(), deadline - Date.now()));
      } catch (error) {
        const pause = Math.min(50 * 2 ** attempt, deadline - Date.now());
        if (!retry || pause <= 0) {
          throw new BackendUnavailableError(`Valkey/Redis unavailable: ${error instanceof Error ? error.message : String(error)}`, error);
        }
        await new Promise((r) => setTimeout(r, pause));
      }
    }
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

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

function batchDigest(keys: string[]): string {
  return sha256Hex(keys.join('\n')).slice(0, 16);
}

function decodeCursor(cursor: string | undefined): [number, string, number, string] {
  if (cursor === undefined) return [0, '0', 0, ''];
  const m = /^(\d+):(\d+):(\d+):([0-9a-f]{16})$/.exec(cursor);
  if (!m) throw new InvalidArgumentError('cursor must be a string from a previous page');
  return [Number(m[1]), m[2]!, Number(m[3]), m[4]!];
}

function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
