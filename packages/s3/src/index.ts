// S3 store: a handful of primitives over conditional PutObject. Claim and
// finish logic (decide, compare-and-swap retry, read-back of ambiguous
// writes) is core's casUpdate; this file only maps S3 answers onto it.
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  backendError,
  BackendUnavailableError,
  CONFLICT,
  createStore,
  IdemError,
  InvalidArgumentError,
  MAX_TIMER_MS,
  parseRecord,
  serverClockOption,
  type CasParts,
  type Conflict,
  type IdempotencyStore,
  type IdemRecord,
  type ScanPage,
  type ServerClock,
  type StoreOptions,
  type Versioned,
  UnsafeBackendError,
  type CasPrimitives,
} from '@idem/core/adapter';
import { probeS3, unsafeSweep, type S3Compat } from './probe.js';
import { s3BucketProblem, s3PrefixProblem } from './url.js';

export interface S3StoreOptions extends StoreOptions {
  /** Your configured client (credentials, region, endpoint; `forcePathStyle` for MinIO). Not closed by the store. */
  client: S3Client;
  bucket: string;
  /** Records are stored as prefix + sha256(key). Default "idem/". Give each store its own prefix. */
  prefix?: string;
  /**
   * Deadline of one S3 call, SDK retries included. A write that runs out of
   * time is resolved by reading the record back. Default 10 s.
   */
  requestTimeoutMs?: number;
  /**
   * Judge leases and retention by the S3 server's clock instead of this
   * machine's: the store's clock follows the `Date` header of every reply.
   * The header has 1 s resolution, so keep `clockSkewMs` >= 1000. Not with `clock`.
   */
  serverClock?: boolean;
  /**
   * Check at open that the bucket exists and that the server keeps the
   * conditional writes idem needs (see probe.ts and the README's
   * compatibility table). Once per endpoint, bucket and prefix per process. Default true.
   */
  probe?: boolean;
  /**
   * Let sweep delete on a server whose conditional DELETE cannot be trusted:
   * ignored (MinIO) or not atomic against a concurrent PUT (versitygw v1.8.0):
   * a claim that rewrites a record between sweep's read and its delete loses
   * it. Default false: where the probe finds DELETE If-Match ignored, sweep refuses with UnsafeBackendError.
   */
  unconditionalSweep?: boolean;
}

const DEFAULT_PREFIX = 'idem/';
const DEFAULT_TIMEOUT_MS = 10_000;
/** Concurrent GETs while listing or sweeping: enough to hide latency, few enough not to be throttled. */
const READ_BATCH = 16;

/** Opens a store on a bucket. Options are checked before any request. */
export async function createS3Store(options: S3StoreOptions): Promise<IdempotencyStore> {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('options must be an object');
  const {
    client,
    bucket,
    prefix = DEFAULT_PREFIX,
    requestTimeoutMs = DEFAULT_TIMEOUT_MS,
    serverClock = false,
    probe = true,
    unconditionalSweep = false,
    ...storeOptions
  } = options;
  if (typeof client?.send !== 'function') throw new InvalidArgumentError('client must be an S3Client');
  const badBucket = s3BucketProblem(bucket);
  if (badBucket !== undefined) throw new InvalidArgumentError(`bucket ${JSON.stringify(bucket)} ${badBucket}`);
  const badPrefix = s3PrefixProblem(prefix);
  if (badPrefix !== undefined) throw new InvalidArgumentError(`prefix ${badPrefix}`);
  // Above 2^31-1 ms Node's timers fire at once: every request would be aborted.
  if (!Number.isSafeInteger(requestTimeoutMs) || requestTimeoutMs <= 0 || requestTimeoutMs > MAX_TIMER_MS) {
    throw new InvalidArgumentError(`requestTimeoutMs must be a whole number of milliseconds in 1..${MAX_TIMER_MS}`);
  }
  if (typeof probe !== 'boolean' || typeof unconditionalSweep !== 'boolean') throw new InvalidArgumentError('probe and unconditionalSweep must be booleans');
  const clock = serverClockOption(serverClock, storeOptions.clock);
  // createStore checks the store options before the driver exists: no request is made with bad ones.
  return createStore(clock ? { ...storeOptions, clock: clock.now } : storeOptions, async () => {
    const driver = new S3Driver(client, bucket, prefix, requestTimeoutMs, clock, unconditionalSweep);
    if (probe) driver.compat = await probeS3(driver, client, bucket, prefix);
    return driver;
  });
}

interface SdkError {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
}
/** Error names S3 and S3-compatible servers use for "slow down" (503 SlowDown on S3 itself). */
const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'TooManyRequestsException', 'RequestLimitExceeded', 'BandwidthLimitExceeded']);
const statusOf = (e: unknown) => (e as SdkError)?.$metadata?.httpStatusCode;
/** 404 means "no such key" only when the bucket itself exists. */
const isNoSuchKey = (e: unknown) => statusOf(e) === 404 && (e as SdkError).name !== 'NoSuchBucket' && (e as SdkError).Code !== 'NoSuchBucket';
/** The SDK resent the request: an earlier attempt may have landed and made this one's precondition fail. */
const wasRetried = (e: unknown) => ((e as SdkError)?.$metadata?.attempts ?? 1) > 1;

/**
 * Maps an S3 failure to a typed error. Throttling, 5xx, timeouts and network
 * errors are BackendUnavailableError (retryable, and for a write: it may have
 * landed). Other 4xx (credentials, missing bucket, bad request) are
 * BackendRefusedError: not retryable, and proof the request was refused.
 */
export function s3Failure(error: unknown, what: string): IdemError {
  const status = statusOf(error);
  const name = (error as SdkError)?.name ?? 'Error';
  const throttled = status === 429 || THROTTLING.has(name);
  const unavailable = status === undefined || status >= 500 || status === 408 || throttled || name === 'RequestTimeout';
  const why = !unavailable ? `HTTP ${status}` : throttled ? 'throttled' : status === undefined ? 'unreachable or timed out' : `server error ${status}`;
  return backendError(error, `S3 ${what}: ${why}`, !unavailable);
}

/** "abc" <-> abc: some servers compare If-Match byte for byte with an unquoted stored ETag. */
const toggleQuotes = (etag: string) => (/^".*"$/.test(etag) ? etag.slice(1, -1) : `"${etag}"`);
const bare = (etag: string) => etag.replace(/^"(.*)"$/, '$1');

/** The primitives core composes into a store: conditional PUTs for claims and finishes, a key scan for list and sweep. */
class S3Driver implements CasParts {
  readonly kind = 's3';
  /** Read after the probe: where DELETE ignores If-Match, or the user opted in to unconditional sweeps, sweep is not conditional. */
  get capabilities() {
    return {
      nativeExpiry: false,
      clock: 'client',
      sharedAcrossProcesses: true,
      conditionalSweep: this.compat.deleteIfMatch !== false && !this.unconditionalSweep,
    } as const;
  }
  readonly concurrency = READ_BATCH;
  compat: S3Compat = { etagToggled: undefined, deleteIfMatch: undefined };

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly prefix: string,
    private readonly timeoutMs: number,
    private readonly clock: ServerClock | undefined,
    private readonly unconditionalSweep: boolean,
  ) {}

  /** The conditional-write primitives, for the open-time probe. */
  get cas(): CasPrimitives {
    return { read: (name) => this.get(name), create: (name, body) => this.create(name, body), replace: (name, body, etag) => this.replace(name, body, etag) };
  }

  send<T>(command: { input: unknown; middlewareStack: DateWatchable }): Promise<T> {
    if (this.clock) watchDate(command, this.clock);
    // One deadline for the call and all its SDK retries; an abort is final (the SDK does not retry it).
    return (this.client.send as (c: unknown, o: unknown) => Promise<T>)(command, { abortSignal: AbortSignal.timeout(this.timeoutMs) });
  }

  private async get(name: string): Promise<{ record: IdemRecord; version: string } | undefined> {
    let bytes: Uint8Array;
    let etag: string | undefined;
    try {
      const out = await this.send<{ Body?: { transformToByteArray(): Promise<Uint8Array> }; ETag?: string }>(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + name }),
      );
      bytes = out.Body ? await out.Body.transformToByteArray() : new Uint8Array();
      etag = out.ETag;
    } catch (error) {
      if (isNoSuchKey(error)) return undefined;
      throw s3Failure(error, `GET ${name}`);
    }
    const record = parseRecord(name, bytes);
    if (etag === undefined) throw new BackendUnavailableError(`S3 GET ${name}: the server sent no ETag, so no conditional write is possible`);
    return { record, version: etag };
  }

  /** A failed precondition is a CONFLICT, unless a resent request may have tripped over its own first attempt. */
  conflictOr(error: unknown, what: string): Conflict {
    const status = statusOf(error);
    if ((status === 412 || status === 409) && wasRetried(error)) {
      throw new BackendUnavailableError(`S3 ${what}: precondition failed on a resent request; the first attempt may have landed`, error);
    }
    // 409 ConditionalRequestConflict: another conditional write on this key was in progress; nothing was written.
    if (status === 412 || status === 409 || isNoSuchKey(error)) return CONFLICT;
    throw s3Failure(error, what);
  }

  private etagOf(out: { ETag?: string }, what: string): string {
    // Without an ETag the write happened but cannot be fenced: let the engine read it back.
    if (out.ETag === undefined) throw new BackendUnavailableError(`S3 ${what}: the server sent no ETag`);
    return out.ETag;
  }

  // Timeline of a claim's create:
  //   client A: PUT <prefix><sha256(key)> If-None-Match: *   -> 200 + ETag: A holds the lease on that ETag
  //   client B: PUT ... If-None-Match: * (concurrently)     -> 412: B reads the record and decides
  // The server checks absence and writes under one lock, so exactly one creator wins.
  // A lost reply (timeout, reset) throws BackendUnavailableError; core reads back
  // and recognises its own body by runId, fence and times.
  async create(name: string, body: string): Promise<string | Conflict> {
    const what = `PUT If-None-Match ${name}`;
    try {
      const out = await this.send<{ ETag?: string }>(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + name, Body: body, ContentType: 'application/json', IfNoneMatch: '*' }),
      );
      return this.etagOf(out, what);
    } catch (error) {
      if (error instanceof IdemError) throw error;
      return this.conflictOr(error, what);
    }
  }

  // Timeline of a takeover or finish (complete, fail, renew, release):
  //   owner:  PUT If-Match: <ETag its lease holds>        -> 200 + new ETag (the lease moves to it)
  //   zombie: PUT If-Match: <older ETag>                  -> 412: core reads, sees another fence: LEASE_LOST
  //   anyone: PUT If-Match on a deleted record            -> 404: CONFLICT, core reads "absent"
  // Of many concurrent takeovers of one ETag exactly one gets 200 (S3 may answer the rest 409).
  // Until one If-Match has been accepted, a 412 is checked: if the object still carries the ETag
  // just sent, the server wants it in the other form (quoted vs unquoted); then the write is
  // resent in that form once, and the form kept for this store.
  async replace(name: string, body: string, etag: string): Promise<string | Conflict> {
    const known = this.compat.etagToggled;
    const first = await this.putIfMatch(name, body, this.ifMatch(etag));
    if (first !== 412 || known !== undefined) return this.written(first, known ?? false);
    if (!(await this.holds(name, etag))) return CONFLICT;
    const second = await this.putIfMatch(name, body, toggleQuotes(etag));
    if (second !== 412) return this.written(second, true);
    if (await this.holds(name, etag)) {
      throw new UnsafeBackendError(
        'replace-if-match',
        `S3 PUT If-Match ${name}: the server refused the ETag it holds (${etag}), quoted and unquoted; no conditional replace is possible`,
      );
    }
    return CONFLICT;
  }

  /** PUT If-Match: the new ETag, or the status of a refused precondition (412, 409, 404). */
  private async putIfMatch(name: string, body: string, ifMatch: string): Promise<string | number> {
    const what = `PUT If-Match ${name}`;
    try {
      const out = await this.send<{ ETag?: string }>(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + name, Body: body, ContentType: 'application/json', IfMatch: ifMatch }),
      );
      return this.etagOf(out, what);
    } catch (error) {
      if (error instanceof IdemError) throw error;
      this.conflictOr(error, what);
      return statusOf(error)!;
    }
  }

  private written(out: string | number, toggled: boolean): string | Conflict {
    if (typeof out === 'number') return CONFLICT;
    this.compat.etagToggled = toggled;
    return out;
  }

  /** HEAD: does the object still carry `etag` (in either form)? */
  private async holds(name: string, etag: string): Promise<boolean> {
    try {
      const out = await this.send<{ ETag?: string }>(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + name }));
      return out.ETag !== undefined && bare(out.ETag) === bare(etag);
    } catch (error) {
      if (isNoSuchKey(error)) return false;
      throw s3Failure(error, `HEAD ${name}`);
    }
  }

  /** The form of an ETag this server takes in If-Match. */
  ifMatch(etag: string): string {
    return this.compat.etagToggled ? toggleQuotes(etag) : etag;
  }

  read(name: string): Promise<Versioned | undefined> {
    return this.get(name);
  }

  /** Keys under the prefix in S3's (lexicographic) order, strictly after `after`. */
  async scan(after: string | undefined, limit: number): Promise<ScanPage> {
    let page: { Contents?: { Key?: string }[]; IsTruncated?: boolean };
    try {
      page = await this.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.prefix,
          MaxKeys: limit,
          ...(after !== undefined ? { StartAfter: this.prefix + after } : {}),
        }),
      );
    } catch (error) {
      throw s3Failure(error, `LIST ${this.prefix}`);
    }
    const entries = (page.Contents ?? []).map((o) => ({ name: (o.Key ?? '').slice(this.prefix.length) }));
    const last = entries.at(-1)?.name;
    return page.IsTruncated && last !== undefined ? { entries, next: last } : { entries };
  }

  // Timeline of a sweep delete (`expected` given):
  //   sweeper: GET -> record past retention or with a dead lease, ETag E
  //   sweeper: DELETE If-Match: E   -> S3 deletes only if nobody rewrote it since (412 otherwise)
  // MinIO ignores If-Match on DELETE: there a takeover landing between the GET and the
  // DELETE is removed with it, so sweep refuses unless unconditionalSweep (README: lifecycle rules).
  // Without `expected` (administrative delete): HEAD to tell whether something was there, then DELETE.
  async delete(name: string, expected?: Versioned): Promise<boolean> {
    const Key = this.prefix + name;
    if (expected === undefined) {
      try {
        await this.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      } catch (error) {
        if (isNoSuchKey(error)) return false;
        throw s3Failure(error, `HEAD ${name}`);
      }
    }
    try {
      await this.send(
        new DeleteObjectCommand({ Bucket: this.bucket, Key, ...(expected?.version !== undefined ? { IfMatch: this.ifMatch(expected.version) } : {}) }),
      );
    } catch (error) {
      if (expected !== undefined && (statusOf(error) === 412 || statusOf(error) === 409 || isNoSuchKey(error))) return false; // changed or gone since the read
      throw s3Failure(error, `DELETE ${name}`);
    }
    return true;
  }

  beforeSweep(): void {
    if (this.compat.deleteIfMatch === false && !this.unconditionalSweep) throw unsafeSweep(this.bucket, this.prefix);
  }

  async writeRaw(name: string, bytes: string | Uint8Array): Promise<void> {
    try {
      await this.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + name, Body: bytes }));
    } catch (error) {
      throw s3Failure(error, `PUT ${name}`);
    }
  }

  async close(): Promise<void> {
    // The client is the caller's: it may serve other code, so it is not destroyed here.
  }
}

type Headers = Record<string, string> | undefined;
type Handler = (args: unknown) => Promise<{ response: unknown }>;
/** Any command's middleware stack; each command types it by its own input and output. */
type DateWatchable = { add(...args: never[]): void };

/**
 * Feeds the `Date` header of every reply to this command (each SDK attempt,
 * errors included) to the store's server clock. Added per command, so the
 * caller's client is left as it is.
 */
function watchDate(command: { middlewareStack: DateWatchable }, clock: ServerClock): void {
  const stack = command.middlewareStack as unknown as { add(middleware: (next: Handler) => Handler, options: { step: 'deserialize'; name: string }): void };
  stack.add(
    (next) => async (args) => {
      const sent = Date.now();
      const seen = (headers: Headers) => {
        const date = headers?.date ?? headers?.Date;
        if (date !== undefined) clock.observe(Date.parse(date), sent, Date.now(), 1000);
      };
      try {
        const out = await next(args);
        seen((out.response as { headers?: Headers }).headers);
        return out;
      } catch (error) {
        seen((error as { $response?: { headers?: Headers } }).$response?.headers);
        throw error;
      }
    },
    { step: 'deserialize', name: 'idemServerClock' },
  );
}
