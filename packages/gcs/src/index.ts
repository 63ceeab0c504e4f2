// Google Cloud Storage store: one small JSON object per key, named
// prefix + sha256(key). Claims and finishes are core's compare-and-swap
// engine (casUpdate) over three primitives built on object generations:
// create = insert with ifGenerationMatch=0, replace = insert with
// ifGenerationMatch=<generation read or last written>.
import type { Bucket, File, Storage } from '@google-cloud/storage';
import {
  backendError,
  BackendUnavailableError,
  CONFLICT,
  createStore,
  describeValue,
  InvalidArgumentError,
  parseRecord,
  serverClockOption,
  type CasParts,
  type Conflict,
  type IdempotencyStore,
  type IdemError,
  type IdemRecord,
  type ScanPage,
  type ServerClock,
  type StoreOptions,
  type Versioned,
} from '@idem/core/adapter';

/**
 * A `Bucket` of @google-cloud/storage, typed by shape: its CommonJS and ESM
 * builds declare distinct classes, and a CommonJS caller's Bucket must
 * type-check against this ESM package too. Checked at run time.
 */
export interface GcsBucket {
  readonly name: string;
  file(...args: never[]): unknown;
  getFiles(...args: never[]): unknown;
}

export interface GcsStoreOptions extends StoreOptions {
  /** Your Bucket, or its name together with `storage`. */
  bucket: GcsBucket | string;
  /** Your Storage client; needed when `bucket` is a name. */
  storage?: { bucket(name: string): GcsBucket } | undefined;
  /** Object name prefix; every store with the same bucket and prefix shares keys. Default "idem/". */
  prefix?: string;
  /**
   * Judge leases and retention by Cloud Storage's clock instead of this
   * machine's: the store's clock follows the `updated` time of its own writes
   * (and, before the first write, the `Date` header of reads). Not with `clock`.
   */
  serverClock?: boolean;
}

/** Opens a store on a bucket. No request is made until the first call. */
export async function createGcsStore(options: GcsStoreOptions): Promise<IdempotencyStore> {
  const { bucket, storage, prefix = 'idem/', serverClock = false, ...storeOptions } = options ?? ({} as GcsStoreOptions);
  const clock = serverClockOption(serverClock, storeOptions.clock);
  const resolvedBucket = resolveBucket(bucket, storage);
  const checkedPrefix = checkPrefix(prefix);
  // createStore checks the store options before the driver exists: no request is made with bad ones.
  return createStore(clock ? { ...storeOptions, clock: clock.now } : storeOptions, () => new GcsDriver(resolvedBucket, checkedPrefix, clock));
}

function resolveBucket(bucket: unknown, storage: unknown): Bucket {
  if (typeof bucket === 'string') {
    if (bucket.length === 0) throw new InvalidArgumentError('bucket must be a non-empty name or a Bucket');
    if (typeof (storage as Storage | undefined)?.bucket !== 'function') {
      throw new InvalidArgumentError('a bucket given by name needs `storage`, a @google-cloud/storage Storage client');
    }
    return (storage as Storage).bucket(bucket);
  }
  if (typeof (bucket as Bucket | undefined)?.file !== 'function' || typeof (bucket as Bucket).getFiles !== 'function') {
    throw new InvalidArgumentError(`bucket must be a @google-cloud/storage Bucket or a bucket name, got ${describeValue(bucket)}`);
  }
  return bucket as Bucket;
}

function checkPrefix(prefix: unknown): string {
  // Object names are at most 1024 bytes; 64 of them are the digest.
  if (typeof prefix !== 'string' || Buffer.byteLength(prefix) > 900 || /[\r\n]/.test(prefix)) {
    throw new InvalidArgumentError(`prefix must be a string of at most 900 bytes without line breaks, got ${describeValue(prefix)}`);
  }
  return prefix;
}

/** HTTP status of a client error, if it came from a response. */
function statusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** A transport failure (reset, refused, timeout, DNS): the request may or may not have reached the server. */
function isNetworkError(error: unknown): boolean {
  const e = error as { code?: unknown; type?: unknown; name?: unknown } | null;
  return typeof e?.code === 'string' || e?.type === 'system' || e?.name === 'AbortError' || e?.name === 'FetchError';
}

/**
 * 408/429/5xx and network failures: BackendUnavailableError (retryable; on a
 * write the engine reads back, since it may have landed). 404 on a write means
 * the bucket is missing, other 4xx a misconfiguration, anything else a local
 * fault: nothing was written and retrying will not help, so not retryable.
 */
function toIdemError(error: unknown, what: string): IdemError {
  const status = statusOf(error);
  const unavailable = status === 408 || status === 429 || (status !== undefined && status >= 500) || (status === undefined && isNetworkError(error));
  const why = unavailable
    ? status !== undefined
      ? `HTTP ${status}`
      : 'no answer'
    : status === 404
      ? 'bucket not found'
      : status !== undefined
        ? `HTTP ${status}`
        : 'client error';
  return backendError(error, `${what}: ${why}`, !unavailable);
}

/** When sweep may remove the record (lease or retention deadline), stored as the object's customTime. */
function sweepAt(body: string): string | undefined {
  // Bodies come from serializeRecord, so they parse.
  const record = JSON.parse(body) as Partial<IdemRecord>;
  const times = [record.status === 'in_flight' ? record.leaseExpiresAt : undefined, record.expiresAt].filter((t): t is number => Number.isSafeInteger(t));
  return times.length > 0 ? new Date(Math.min(...times)).toISOString() : undefined;
}

const READ_CONCURRENCY = 16;
const READ_ATTEMPTS = 3;
const READ_BACKOFF_MS = 100;

/** The primitives core composes into a store: conditional writes for claims and finishes, a name scan for list and sweep. */
class GcsDriver implements CasParts {
  readonly kind = 'gcs';
  readonly capabilities = { nativeExpiry: false, clock: 'client', sharedAcrossProcesses: true } as const;
  readonly concurrency = READ_CONCURRENCY;

  constructor(
    private readonly bucket: Bucket,
    private readonly prefix: string,
    private readonly clock: ServerClock | undefined,
  ) {}

  create(name: string, body: string): Promise<string | Conflict> {
    return this.write(name, body, '0');
  }

  replace(name: string, body: string, generation: string): Promise<string | Conflict> {
    return this.write(name, body, generation);
  }

  /**
   * The one conditional write, a single-request multipart upload.
   * Timeline of a claim (generation "0"): insert?ifGenerationMatch=0 -> 200,
   *   we created the record; or 412, someone holds the name -> CONFLICT, the
   *   engine reads it (with its generation) and decides.
   * Timeline of a takeover or finish (generation g read or last written by the
   *   lease): insert?ifGenerationMatch=g -> 200, nobody wrote since g; or 412,
   *   someone did (takeover, finish, sweep) -> CONFLICT, the engine re-reads
   *   and a zombie gets LEASE_LOST.
   * The client retries preconditioned uploads on 408/429/5xx/resets. If an
   *   attempt landed but its reply was lost, the next attempt gets 412 on our
   *   own write: a 412 after more than one attempt is ambiguous, so it is
   *   reported as such and the engine reads back and compares the bodies.
   */
  private async write(name: string, body: string, generation: string): Promise<string | Conflict> {
    const file = this.bucket.file(this.prefix + name);
    let attempts = 0;
    // Counts the client's attempts at this upload (its own retries included).
    const count = ((opts: unknown) => {
      attempts++;
      return opts;
    }) as File['interceptors'][number]['request'];
    file.interceptors.push({ request: count });
    const customTime = sweepAt(body);
    const sent = Date.now();
    try {
      await file.save(body, {
        resumable: false,
        // Off: on a hash mismatch the client deletes the object unconditionally, which could remove a newer owner's record.
        validation: false,
        metadata: { contentType: 'application/json', ...(customTime !== undefined ? { customTime } : {}) },
        preconditionOpts: { ifGenerationMatch: generation },
      });
    } catch (error) {
      const status = statusOf(error);
      if (status === 412) {
        if (attempts <= 1) return CONFLICT;
        throw new BackendUnavailableError(`write of ${this.prefix + name}: 412 after ${attempts} attempts, an earlier attempt may have landed`, error);
      }
      // GCS answers 412 when the object is gone; should a server say 404 instead, re-read (a missing bucket then shows on create).
      if (status === 404 && generation !== '0') return CONFLICT;
      throw toIdemError(error, `write of ${this.prefix + name}`);
    }
    // `updated` is the server's commit time, in microseconds: the sharpest clock reading we get.
    this.clock?.observe(Date.parse(String(file.metadata.updated)), sent, Date.now(), 0);
    const written = file.metadata.generation;
    if (written === undefined || written === null) throw new BackendUnavailableError(`write of ${this.prefix + name}: no generation in the reply`);
    return String(written);
  }

  /**
   * Body and generation in one GET (x-goog-generation header); undefined when
   * absent. The client's own retry of a streamed download is switched off for
   * this request: in @google-cloud/storage 8.4 a retried 5xx/429 download throws
   * ERR_STREAM_UNABLE_TO_PIPE as an unhandled rejection, which ends the process
   * (googleapis/google-cloud-node#8670). Reads are retried here instead.
   */
  private async fetch(objectName: string, generation?: string): Promise<{ body: Buffer; generation: string } | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.fetchOnce(this.bucket.file(objectName, generation !== undefined ? { generation } : {}));
      } catch (error) {
        if (!(error instanceof BackendUnavailableError) || attempt >= READ_ATTEMPTS) throw error;
        await new Promise((r) => setTimeout(r, READ_BACKOFF_MS * 4 ** (attempt - 1)));
      }
    }
  }

  private fetchOnce(file: File): Promise<{ body: Buffer; generation: string } | undefined> {
    const noClientRetry = ((opts: { maxRetries?: number }) => {
      opts.maxRetries = 0;
      return opts;
    }) as unknown as File['interceptors'][number]['request'];
    file.interceptors.push({ request: noClientRetry });
    const sent = Date.now();
    return new Promise((resolve, reject) => {
      let generation: string | undefined;
      const chunks: Buffer[] = [];
      file
        .createReadStream()
        .on('response', (res: { headers?: Record<string, string | string[] | undefined> }) => {
          const h = res.headers?.['x-goog-generation'];
          generation = Array.isArray(h) ? h[0] : h;
          const date = res.headers?.date;
          if (typeof date === 'string') this.clock?.observe(Date.parse(date), sent, Date.now(), 1000);
        })
        .on('data', (chunk: Buffer) => chunks.push(chunk))
        .on('error', (error: unknown) => (statusOf(error) === 404 ? resolve(undefined) : reject(toIdemError(error, `read of ${file.name}`))))
        .on('end', () =>
          generation === undefined
            ? reject(new BackendUnavailableError(`read of ${file.name}: no x-goog-generation header`))
            : resolve({ body: Buffer.concat(chunks), generation }),
        );
    });
  }

  /** The record at its live generation, or at `generation` (as listed) when given. */
  async read(name: string, generation?: string): Promise<Versioned | undefined> {
    const got = await this.fetch(this.prefix + name, generation);
    // Named by its storage name, like on every backend, not by the object's full name.
    return got === undefined ? undefined : { record: parseRecord(name, got.body), version: got.generation };
  }

  /**
   * One page of object names in name order, strictly after `after`; the
   * listed generation and customTime (the record's deadline) come along, so
   * sweep reads at that generation and skips objects not yet due, unread.
   */
  async scan(after: string | undefined, limit: number): Promise<ScanPage> {
    let files: File[];
    let more: boolean;
    try {
      const [got, next] = await this.bucket.getFiles({
        prefix: this.prefix,
        autoPaginate: false,
        maxResults: limit,
        // startOffset is inclusive: core skips `after` itself.
        ...(after !== undefined ? { startOffset: this.prefix + after } : {}),
      });
      files = got;
      more = (next as { pageToken?: string } | null | undefined)?.pageToken !== undefined;
    } catch (error) {
      throw toIdemError(error, `list of ${this.prefix}`);
    }
    const entries = files
      .filter((f) => f.name.startsWith(this.prefix))
      .map((f) => {
        const at = f.metadata.customTime;
        return {
          name: f.name.slice(this.prefix.length),
          version: String(f.metadata.generation),
          ...(typeof at === 'string' ? { sweepAt: Date.parse(at) } : {}),
        };
      });
    // An empty page ends the scan even if a page token came with it: there is no name to continue after.
    const last = entries.at(-1)?.name;
    return more && last !== undefined ? { entries, next: last } : { entries };
  }

  /**
   * Sweep's delete, at the generation read; unconditional without `expected`.
   * Timeline: list -> read g -> delete?generation=g&ifGenerationMatch=g.
   *   If the key was re-claimed or renewed after the read, the live generation
   *   is no longer g and the delete answers 404/412: the new record stays.
   * (fake-gcs-server v1.56.1 ignores ifGenerationMatch on delete but honours
   * the generation parameter; real GCS honours both.)
   */
  async delete(name: string, expected?: Versioned): Promise<boolean> {
    const objectName = this.prefix + name;
    const generation = expected?.version;
    try {
      if (generation === undefined) await this.bucket.file(objectName).delete();
      else await this.bucket.file(objectName, { generation }).delete({ ifGenerationMatch: generation });
      return true;
    } catch (error) {
      const status = statusOf(error);
      if (status === 404) return false; // gone (or, at a generation, replaced since the read)
      if (status === 412 && generation !== undefined) return false; // changed since it was read: not ours to remove
      throw toIdemError(error, `delete of ${objectName}`);
    }
  }

  /** Test hook: raw bytes, unconditionally. */
  async writeRaw(name: string, bytes: string | Uint8Array): Promise<void> {
    try {
      await this.bucket.file(this.prefix + name).save(Buffer.from(bytes), { resumable: false, validation: false });
    } catch (error) {
      throw toIdemError(error, `raw write of ${this.prefix + name}`);
    }
  }

  async close(): Promise<void> {
    // The Storage client is the caller's; nothing of ours to close.
  }
}
