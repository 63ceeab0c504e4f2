import { createHash } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import {
  BackendUnavailableError,
  CorruptRecordError,
  IdempotencyStore,
  InvalidArgumentError,
  KeyReuseError,
  LeaseLostError,
  leaseOf,
  parseRecord,
  resolveStoreOptions,
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
import { CLAIM_LUA, FINISH_LUA } from './lua.js';

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
  options?: { keyPrefix?: string };
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
  /** How long a dead in_flight record stays visible (and a late finish can land) after its lease. Default 10 minutes. */
  leaseGraceMs?: number;
  /** How long the fence counter outlives its record. Default 1 day. */
  fenceMarginMs?: number;
  /** Bound on one operation, retries included; past it: BACKEND_UNAVAILABLE. Default 5 s. */
  timeoutMs?: number;
}

const DEFAULT_PREFIX = 'idem:';
const DEFAULT_GRACE_MS = 10 * 60_000;
const DEFAULT_MARGIN_MS = 24 * 3600_000;
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
    leaseGraceMs = DEFAULT_GRACE_MS,
    fenceMarginMs = DEFAULT_MARGIN_MS,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    ...storeOptions
  } = options ?? ({} as ValkeyStoreOptions);
  const sources = [client, url, cluster].filter((x) => x !== undefined).length;
  if (sources !== 1) throw new InvalidArgumentError('give exactly one of client, url or cluster');
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) throw new InvalidArgumentError('prefix must be a string without { or } (the store sets hash tags itself)');
  validateDuration('leaseGraceMs', leaseGraceMs);
  validateDuration('fenceMarginMs', fenceMarginMs);
  validateDuration('timeoutMs', timeoutMs);
  resolveStoreOptions(storeOptions); // bad options fail before any connection is made
  if (client !== undefined) {
    if (typeof client !== 'object' || client === null || typeof client.call !== 'function') throw new InvalidArgumentError('client must be an ioredis-compatible Redis or Cluster');
    // ioredis prefixes command keys but not SCAN results: list would then read the wrong keys.
    if (client.options?.keyPrefix) throw new InvalidArgumentError('client has keyPrefix set: use the store option prefix instead');
  }
  const owned = client === undefined ? openClient(url, cluster, timeoutMs) : undefined;
  const driver = new ValkeyDriver(client ?? owned!, owned !== undefined, { prefix, leaseGraceMs, fenceMarginMs, timeoutMs });
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
        clusterRetryStrategy: (times) => (times > 3 ? null : 100 * times),
      },
    );
  }
  // Errors reach callers as BACKEND_UNAVAILABLE; the event only needs a listener so it is not logged as unhandled.
  c.on('error', () => undefined);
  return c as unknown as ValkeyClient;
}

interface Settings {
  prefix: string;
  leaseGraceMs: number;
  fenceMarginMs: number;
  timeoutMs: number;
}

class ValkeyDriver implements Driver {
  readonly capabilities = { nativeExpiry: true, clock: 'server', sharedAcrossProcesses: true } as const;
  private readonly claimSha = sha1(CLAIM_LUA);
  private readonly finishSha = sha1(FINISH_LUA);

  constructor(
    private readonly client: ValkeyClient,
    private readonly owned: boolean,
    private readonly s: Settings,
  ) {}

  // One hash tag per key: the record and its fence counter share a cluster slot.
  private recordKey = (name: string) => `${this.s.prefix}{${name}}:r`;
  private counterKey = (name: string) => `${this.s.prefix}{${name}}:f`;

  async claim(input: ClaimInput): Promise<ClaimOutcome> {
    const rk = this.recordKey(input.name);
    const reply = await this.script(CLAIM_LUA, this.claimSha, [rk, this.counterKey(input.name)], [
      input.recordKey,
      input.runId,
      input.leaseMs,
      this.s.leaseGraceMs,
      this.s.fenceMarginMs,
      input.fingerprint ?? '',
      input.force ? '1' : '0',
      input.dedupOn,
    ]);
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
    const [tag, a] = await this.script(FINISH_LUA, this.finishSha, [rk, this.counterKey(lease.name)], [
      op.op,
      lease.runId,
      lease.fence,
      op.op === 'renew' ? op.leaseMs : 0,
      retentionMs,
      this.s.leaseGraceMs,
      this.s.fenceMarginMs,
      payload,
    ]);
    if (tag === 'lost') throw new LeaseLostError(lease.key, a ? parseRecord(rk, a) : undefined);
    if (tag !== 'ok') throw this.corrupt(rk, a);
    if (!a) return {};
    const record = parseRecord(rk, a);
    return op.op === 'renew' ? { lease: leaseOf(lease.key, lease.name, record) } : { record };
  }

  async read(name: string): Promise<IdemRecord | undefined> {
    const rk = this.recordKey(name);
    const raw = await this.getRaw(rk);
    return raw === null ? undefined : parseRecord(rk, raw);
  }

  /**
   * SCAN over every master (one for standalone). The cursor is node index,
   * SCAN cursor and how many keys of that SCAN batch were already returned,
   * so a page can end inside a batch. SCAN's own guarantee holds: a record
   * present for the whole listing is returned at least once.
   */
  async list(query: ListQuery): Promise<ListPage> {
    const nodes = this.scanNodes();
    let [node, scanCursor, skip] = decodeCursor(query.cursor);
    const pattern = `${globEscape(this.s.prefix)}{*}:r`;
    const records: IdemRecord[] = [];
    while (node < nodes.length) {
      const [next, keys] = (await this.op(() => nodes[node]!.call('SCAN', scanCursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT))) as [string, string[]];
      const raws = await Promise.all(keys.slice(skip).map((k) => this.getRaw(k)));
      for (const [i, raw] of raws.entries()) {
        if (records.length === query.limit) return { records, cursor: `${node}:${scanCursor}:${skip + i}` };
        if (raw == null) continue; // expired between SCAN and GET
        const record = parseRecord(keys[skip + i]!, raw);
        if (query.filter(record)) records.push(record);
      }
      skip = 0;
      if (next === '0') [node, scanCursor] = [node + 1, '0'];
      else scanCursor = next;
    }
    return { records };
  }

  /** Never called (nativeExpiry): Valkey removes records when their PX runs out. */
  async sweep() {
    return { expired: 0, deadLeases: 0 };
  }

  /** Removes the record; the fence counter stays, so a later claim still gets a larger fence. */
  async remove(name: string): Promise<boolean> {
    return ((await this.op(() => this.client.call('DEL', this.recordKey(name)))) as number) > 0;
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
  private async script(lua: string, sha: string, keys: string[], args: Arg[]): Promise<ScriptReply> {
    const reply = await this.op(async () => {
      try {
        return await this.client.call('EVALSHA', sha, keys.length, ...keys, ...args);
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
        return this.client.call('EVAL', lua, keys.length, ...keys, ...args);
      }
    }, true);
    const ok = Array.isArray(reply) && typeof reply[0] === 'string' && reply.slice(1).every((x) => x == null || typeof x === 'string');
    if (!ok) throw new BackendUnavailableError(`unexpected script reply ${JSON.stringify(reply)?.slice(0, 100)}: is this Valkey/Redis 7?`);
    return reply as ScriptReply;
  }

  /** Bounds an operation by timeoutMs and maps every failure to BACKEND_UNAVAILABLE; `retry` repeats it within that bound. */
  private async op<T>(fn: () => Promise<T>, retry = false): Promise<T> {
    const deadline = Date.now() + this.s.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const left = deadline - Date.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([
          fn(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no reply within ${left} ms`)), left);
          }),
        ]);
      } catch (error) {
        if (isWrongType(error)) throw error;
        const pause = Math.min(50 * 2 ** attempt, deadline - Date.now());
        if (!retry || pause <= 0) {
          throw new BackendUnavailableError(`Valkey/Redis unavailable: ${error instanceof Error ? error.message : String(error)}`, error);
        }
        await new Promise((r) => setTimeout(r, pause));
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** GET of a record's raw bytes; a key of another type is a corrupt record, not an outage. */
  private async getRaw(rk: string): Promise<Buffer | null> {
    try {
      return (await this.op(() => this.client.callBuffer('GET', rk))) as Buffer | null;
    } catch (error) {
      if (isWrongType(error)) throw this.corrupt(rk, (error as Error).message);
      throw error;
    }
  }
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

function isWrongType(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('WRONGTYPE');
}

function decodeCursor(cursor: string | undefined): [number, string, number] {
  if (cursor === undefined) return [0, '0', 0];
  const m = /^(\d+):(\d+):(\d+)$/.exec(cursor);
  if (!m) throw new InvalidArgumentError('cursor must be a string from a previous page');
  return [Number(m[1]), m[2]!, Number(m[3])];
}

function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
