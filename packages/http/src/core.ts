// The one HTTP core every entry point uses: from a request's parts (method, path, query, headers,
// body, the caller's identity and route) to what to answer: pass through, a replay, a problem, or
// "run the handler" with a finish that stores its response under the claim's fence.
// The claim, lease renewal, takeover and fenced finish are core's runOnce: nothing of it is redone here.
import {
  BackendUnavailableError,
  canonicalJson,
  fingerprint as hashParams,
  InvalidArgumentError,
  isIdemError,
  KeyReuseError,
  LeaseLostError,
  MIN_LEASE_MS,
  runOnce,
  sha256Hex,
  type IdempotencyStore,
  type JsonValue,
  type RunContext,
  type RunResult,
} from '@idem/core';
import { createHash } from 'node:crypto';
import { problem, type ProblemCode } from './problem.js';

/** The parts of a request the fingerprint can cover. */
export type FingerprintField = 'method' | 'path' | 'query' | 'body';

export interface IdempotencyOptions {
  /** Any idem store (LMDB, Valkey, S3, GCS, ...). */
  store: IdempotencyStore;
  /** Methods the middleware covers; others pass through. Default POST and PATCH. */
  methods?: readonly string[];
  /** The request header carrying the key. Default `Idempotency-Key`. */
  header?: string;
  /** A covered request without a key: 400 when true (default), passed through untouched when false. */
  required?: boolean;
  /** Longest key accepted, in characters. Default 255. */
  maxKeyLength?: number;
  /** What a key may hold. Default visible ASCII (0x21-0x7e). */
  keyPattern?: RegExp;
  /** Parts of the request a reused key must match (else 422); false for none. Default all four. */
  fingerprint?: readonly FingerprintField[] | false;
  /** A retry while the first request runs: wait up to this long for its response, then 409. Default 0 (409 at once). */
  waitMs?: number;
  /** `Retry-After` (seconds) on a 409 or 503. Default 1. */
  retryAfterSeconds?: number;
  /** Which response statuses are stored and replayed. Default every status below 500 (Stripe's rule). */
  cache?: (status: number) => boolean;
  /**
   * What happens to the claim of a response that is not stored (a status `cache` refuses, a handler
   * that threw, a body past `maxResponseBytes`): `fail` records a failure, `release` gives the key back
   * without one. Either way the next retry runs the handler again. Default `fail`.
   */
  uncached?: 'fail' | 'release';
  /** Response headers replayed (lower case); `set-cookie` is refused. Default content-type, location, etag. */
  replayHeaders?: readonly string[];
  /** The header that marks a replay (value `true`). Default `Idempotent-Replayed`. */
  replayedHeader?: string;
  /** Largest request body: 413 past it, before any claim. Default 1 MiB. */
  maxRequestBytes?: number;
  /** Largest response body stored; a larger one is passed through uncached. Default and maximum: what fits the store's maxResultBytes. */
  maxResponseBytes?: number;
  /** Lease of each claim (renewed while the handler runs). Default the store's. */
  leaseMs?: number;
  /** Told of errors answered as 500/503 (a lost lease, a backend fault), to log them. Must not throw. */
  onError?: (error: unknown) => void;
}

/** A response as the core sees it: fully buffered. */
export interface CapturedResponse {
  status: number;
  /** Header name (any case) and value pairs, in order; repeated names allowed. */
  headers: ReadonlyArray<readonly [string, string]>;
  body: Uint8Array;
}

/** A request as an adapter hands it to the core. */
export interface Exchange {
  method: string;
  /** The URL's path, e.g. `/orders`. */
  path: string;
  /** The URL's query string without `?`, possibly empty. */
  query: string;
  /** The key header's value, or null when absent. */
  key: string | null;
  /** The caller's identity (tenant, user, API key id): keys are scoped by it. */
  identity: string;
  /** The route (a template such as `/orders/:id`, or the path): keys are scoped by it. */
  route: string;
  /** The body as bytes, or as a framework parsed it (a JSON value); undefined when there is none. */
  body: Uint8Array | JsonValue | undefined;
  contentType: string | null;
}

export type Begin =
  /** Not covered (method, or an optional key absent): run the handler as if the middleware were not there. */
  | { kind: 'pass' }
  /** Answer this (a replay or a problem); the handler must not run. */
  | { kind: 'respond'; response: CapturedResponse }
  /** The claim is ours: run the handler, then call exactly one of finish or crash. */
  | { kind: 'run'; run: Run };

export interface Run {
  /** Aborted if the lease is lost to another request while the handler runs. */
  readonly signal: AbortSignal;
  /**
   * The claim's fence: it increases with every claim of the key. Hand it to a downstream that
   * refuses writes with a lower fence than it has seen, and a stalled request that was taken over
   * cannot act there either.
   */
  readonly fence: number;
  /**
   * The handler's response, or `uncacheable` for one that cannot be stored (a stream past the bound):
   * stores it if its status is cached. Resolves to undefined when the handler's response is to be
   * sent, or to a problem to send instead (a 500 when the lease was lost meanwhile: nothing was
   * stored over the successor's record).
   */
  finish(response: CapturedResponse | 'uncacheable'): Promise<CapturedResponse | undefined>;
  /** The handler threw: the claim is failed or released (`uncached`); rethrow the error afterwards. */
  crash(error: unknown): Promise<void>;
}

/** What is stored as the run's result: status, allowed headers, body in base64. */
interface Stored {
  status: number;
  headers: [string, string][];
  body: string;
}

const VISIBLE_ASCII = /^[\x21-\x7e]+$/;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Room left in a stored result for the status, headers and JSON around the base64 body. */
const RESULT_SLACK_BYTES = 4096;

/** Thrown inside the run to turn "not stored" into a fail or release of the claim; never escapes. */
class NotStored extends Error {}

export class HttpIdempotency {
  readonly store: IdempotencyStore;
  readonly methods: ReadonlySet<string>;
  readonly header: string;
  readonly maxRequestBytes: number;
  readonly maxResponseBytes: number;
  readonly #o: Required<
    Pick<IdempotencyOptions, 'required' | 'maxKeyLength' | 'keyPattern' | 'waitMs' | 'retryAfterSeconds' | 'cache' | 'uncached' | 'replayedHeader'>
  >;
  readonly #fields: readonly FingerprintField[];
  readonly #replay: ReadonlySet<string>;
  readonly #leaseMs: number | undefined;
  readonly #onError: (error: unknown) => void;

  constructor(options: IdempotencyOptions) {
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
    const { store } = options;
    if (store === null || typeof store !== 'object' || typeof store.claim !== 'function') throw new InvalidArgumentError('store must be an idem store');
    this.store = store;
    const methods = options.methods ?? ['POST', 'PATCH'];
    if (!Array.isArray(methods) || methods.some((m) => typeof m !== 'string' || !TOKEN.test(m)))
      throw new InvalidArgumentError('methods must be HTTP method names');
    this.methods = new Set(methods.map((m) => m.toUpperCase()));
    this.header = token('header', options.header ?? 'Idempotency-Key');
    const fields = options.fingerprint ?? ['method', 'path', 'query', 'body'];
    if (fields !== false && (!Array.isArray(fields) || fields.some((f) => !['method', 'path', 'query', 'body'].includes(f)))) {
      throw new InvalidArgumentError('fingerprint must be false or a list of method, path, query, body');
    }
    this.#fields = fields === false ? [] : [...new Set(fields)].sort();
    const replay = (options.replayHeaders ?? ['content-type', 'location', 'etag']).map((h) => token('replayHeaders', h).toLowerCase());
    // A cookie set for the first caller must never reach whoever replays the key.
    if (replay.includes('set-cookie'))
      throw new InvalidArgumentError("replayHeaders must not include set-cookie: a replay must never hand out the first caller's cookies");
    this.#replay = new Set(replay);
    const fit = Math.floor(((store.maxResultBytes - RESULT_SLACK_BYTES) * 3) / 4);
    if (fit < 1) throw new InvalidArgumentError(`the store's maxResultBytes (${store.maxResultBytes}) leaves no room for a response body`);
    this.maxResponseBytes = bytes('maxResponseBytes', options.maxResponseBytes ?? fit);
    if (this.maxResponseBytes > fit) {
      throw new InvalidArgumentError(
        `maxResponseBytes must be at most ${fit} for a store with maxResultBytes ${store.maxResultBytes} (bodies are stored in base64)`,
      );
    }
    this.maxRequestBytes = bytes('maxRequestBytes', options.maxRequestBytes ?? 1024 * 1024);
    const uncached = options.uncached ?? 'fail';
    if (uncached !== 'fail' && uncached !== 'release') throw new InvalidArgumentError('uncached must be fail or release');
    const cache = options.cache ?? ((status: number) => status < 500);
    if (typeof cache !== 'function') throw new InvalidArgumentError('cache must be a function of the status');
    const keyPattern = options.keyPattern ?? VISIBLE_ASCII;
    if (!(keyPattern instanceof RegExp)) throw new InvalidArgumentError('keyPattern must be a RegExp');
    this.#o = {
      required: options.required ?? true,
      maxKeyLength: bytes('maxKeyLength', options.maxKeyLength ?? 255),
      keyPattern,
      waitMs: whole('waitMs', options.waitMs ?? 0),
      retryAfterSeconds: whole('retryAfterSeconds', options.retryAfterSeconds ?? 1),
      cache,
      uncached,
      replayedHeader: token('replayedHeader', options.replayedHeader ?? 'Idempotent-Replayed'),
    };
    if (options.leaseMs !== undefined && (!Number.isSafeInteger(options.leaseMs) || options.leaseMs < MIN_LEASE_MS)) {
      throw new InvalidArgumentError(`leaseMs must be a whole number of milliseconds, at least ${MIN_LEASE_MS}`);
    }
    this.#leaseMs = options.leaseMs;
    this.#onError = options.onError ?? (() => {});
  }

  /** True when responses with this status are stored and replayed. */
  caches(status: number): boolean {
    return this.#o.cache(status);
  }

  /** True when the middleware covers this method (adapters skip reading bodies otherwise). */
  covers(method: string): boolean {
    return this.methods.has(method.toUpperCase());
  }

  /** A 413 problem when a declared length is past the bound (before reading or claiming anything). */
  tooLarge(contentLength: string | null | undefined): CapturedResponse | undefined {
    const n = contentLength == null ? Number.NaN : Number(contentLength);
    return n > this.maxRequestBytes ? problem(413, 'REQUEST_TOO_LARGE', `the request body is over ${this.maxRequestBytes} bytes`) : undefined;
  }

  /** 413 for a body that turned out past the bound while being read. */
  bodyTooLarge(): CapturedResponse {
    return problem(413, 'REQUEST_TOO_LARGE', `the request body is over ${this.maxRequestBytes} bytes`);
  }

  /**
   * Decides what to do with a request. Never throws for a request's fault: bad keys, reuse,
   * in flight and backend faults are answered as problems.
   */
  async begin(ex: Exchange): Promise<Begin> {
    if (!this.covers(ex.method)) return { kind: 'pass' };
    if (ex.key === null) {
      return this.#o.required
        ? { kind: 'respond', response: problem(400, 'IDEMPOTENCY_KEY_MISSING', `${this.header} header is required for ${ex.method.toUpperCase()}`) }
        : { kind: 'pass' };
    }
    const key = parseKey(ex.key);
    if (key === undefined || key.length === 0 || key.length > this.#o.maxKeyLength || !this.#o.keyPattern.test(key)) {
      return {
        kind: 'respond',
        response: problem(400, 'IDEMPOTENCY_KEY_INVALID', `${this.header} must be 1 to ${this.#o.maxKeyLength} characters matching ${this.#o.keyPattern}`),
      };
    }
    if (typeof ex.identity !== 'string' || typeof ex.route !== 'string') {
      return { kind: 'respond', response: this.#fault(new InvalidArgumentError('identity and route must be strings')) };
    }
    // Scoped by who asks, for what: one tenant's key never finds another's response. JSON, so no
    // choice of identity or route can forge another scope's key.
    const lookup = `http:${JSON.stringify([ex.identity, ex.method.toUpperCase(), ex.route, key])}`;
    let print: string | undefined;
    try {
      print = this.#fields.length === 0 ? undefined : this.#fingerprint(ex);
    } catch (error) {
      return { kind: 'respond', response: problem(400, 'INVALID_BODY', `the body cannot be fingerprinted: ${(error as Error).message}`) };
    }
    return this.#claim(lookup, print);
  }

  #fingerprint(ex: Exchange): string {
    const parts: Record<string, string> = {};
    for (const f of this.#fields) {
      if (f === 'method') parts.method = ex.method.toUpperCase();
      else if (f === 'path') parts.path = ex.path;
      else if (f === 'query') parts.query = canonicalQuery(ex.query);
      else parts.body = bodyDigest(ex.body, ex.contentType);
    }
    return hashParams(parts);
  }

  async #claim(lookup: string, print: string | undefined): Promise<Begin> {
    const wait = this.#o.waitMs > 0;
    let started!: (begin: Begin) => void;
    const begun = new Promise<Begin>((resolve) => {
      started = resolve;
    });
    // Settled by finish or crash; the run's fn waits on it.
    let settle!: (value: Stored | NotStored) => void;
    const handed = new Promise<Stored | NotStored>((resolve) => {
      settle = resolve;
    });
    let giveBack: AbortController | undefined;
    let context: RunContext | undefined;
    const outcome = runOnce(
      this.store,
      lookup,
      async (ctx) => {
        context = ctx;
        started({ kind: 'run', run });
        const value = await handed;
        if (value instanceof NotStored) {
          // runOnce releases the claim when its signal aborted by the time fn throws, and fails it otherwise.
          if (this.#o.uncached === 'release') giveBack!.abort(value);
          throw value;
        }
        return value as unknown as JsonValue;
      },
      {
        onInFlight: wait ? 'wait' : 'skip',
        waitTimeoutMs: wait ? this.#o.waitMs : undefined,
        fingerprint: print,
        // A response that was not stored must let the next retry run, whatever the store's default.
        dedupOn: 'success',
        leaseMs: this.#leaseMs,
        // Only `release` needs a signal (runOnce releases instead of failing when it aborted); without
        // one runOnce does not listen for it.
        signal: this.#o.uncached === 'release' ? (giveBack = new AbortController()).signal : undefined,
      },
    ).then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    const self = this;
    const run: Run = {
      // ctx.signal is made on first use by runOnce: read it only if the handler asks.
      get signal() {
        return context!.signal;
      },
      get fence() {
        return context!.lease.fence;
      },
      async finish(response) {
        const stored = response === 'uncacheable' || !self.#o.cache(response.status) ? undefined : self.#encode(response);
        settle(stored ?? new NotStored());
        const o = await outcome;
        if (!('error' in o) || o.error instanceof NotStored) return undefined;
        // A result the store cannot hold was failed by runOnce: the response goes out uncached.
        if (isIdemError(o.error, 'INVALID_ARGUMENT')) return undefined;
        return self.#fault(o.error);
      },
      async crash(error) {
        settle(new NotStored('the handler threw', { cause: error }));
        const o = await outcome;
        if ('error' in o && !(o.error instanceof NotStored)) self.#onError(o.error);
      },
    };
    void outcome.then((o) => started('error' in o ? { kind: 'respond', response: this.#fault(o.error) } : this.#answer(o.result)));
    return begun;
  }

  /** What runOnce said when the handler did not run here: a replay, or 409. */
  #answer(result: RunResult<JsonValue>): Begin {
    if (result.status === 'in_flight') return { kind: 'respond', response: this.#inFlight() };
    if (result.status === 'completed') {
      const stored = result.result as unknown as Stored | undefined;
      if (!isStored(stored))
        return { kind: 'respond', response: this.#fault(new InvalidArgumentError(`the record of key ${result.record.key} holds no stored HTTP response`)) };
      const headers: [string, string][] = stored.headers.filter(([name]) => this.#replay.has(name));
      headers.push([this.#o.replayedHeader, 'true']);
      return { kind: 'respond', response: { status: stored.status, headers, body: Buffer.from(stored.body, 'base64') } };
    }
    // Executed: finish already answered the caller; begin resolved to "run" long before.
    return { kind: 'pass' };
  }

  #inFlight(): CapturedResponse {
    const response = problem(409, 'IN_FLIGHT', 'a request with this key is still being processed; retry later');
    (response.headers as [string, string][]).push(['retry-after', String(this.#o.retryAfterSeconds)]);
    return response;
  }

  /** Errors that end a request: the problem to answer. */
  #fault(error: unknown): CapturedResponse {
    if (error instanceof KeyReuseError)
      return problem(422, 'KEY_REUSE_MISMATCH', 'this key was used with a different request; use a new key for a new request');
    if (isIdemError(error, 'IN_FLIGHT')) return this.#inFlight();
    if (isIdemError(error, 'INVALID_KEY')) return problem(400, 'IDEMPOTENCY_KEY_INVALID', `${this.header} is too long once scoped to the caller and route`);
    this.#onError(error);
    if (error instanceof LeaseLostError) {
      return problem(500, 'LEASE_LOST', 'this request ran past its lease and another request took the key over; its response was not stored');
    }
    if (error instanceof BackendUnavailableError) {
      const response = problem(503, 'BACKEND_UNAVAILABLE', 'the idempotency store could not be reached; retry later');
      (response.headers as [string, string][]).push(['retry-after', String(this.#o.retryAfterSeconds)]);
      return response;
    }
    return problem(500, 'INTERNAL', 'the idempotency layer failed');
  }

  #encode(response: CapturedResponse): Stored | undefined {
    if (response.body.byteLength > this.maxResponseBytes) return undefined;
    const headers: [string, string][] = [];
    for (const [name, value] of response.headers) if (this.#replay.has(name.toLowerCase())) headers.push([name.toLowerCase(), value]);
    return { status: response.status, headers, body: Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength).toString('base64') };
  }
}

/** The key header's value: an RFC 8941 sf-string (the draft's form, quoted) or a bare value (Stripe's). */
function parseKey(raw: string): string | undefined {
  const value = raw.trim();
  if (!value.startsWith('"')) return value;
  let out = '';
  for (let i = 1; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\') {
      const next = value[++i];
      if (next !== '"' && next !== '\\') return undefined;
      out += next;
    } else if (c === '"') {
      return i === value.length - 1 ? out : undefined;
    } else out += c;
  }
  return undefined;
}

/** Query parameters sorted by name (stable for equal names), so their order does not change the fingerprint. */
function canonicalQuery(query: string): string {
  if (query === '') return '';
  const params = [...new URLSearchParams(query)];
  params.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return new URLSearchParams(params).toString();
}

/**
 * The body's digest: a JSON body by its canonical form (key order and spacing do not matter, whether
 * the bytes or a framework's parse are given), any other body by its bytes.
 */
export function bodyDigest(body: Uint8Array | JsonValue | undefined, contentType: string | null): string {
  if (body === undefined || (body instanceof Uint8Array && body.byteLength === 0)) return sha256Hex('');
  if (!(body instanceof Uint8Array)) return `json:${sha256Hex(canonicalJson(body))}`;
  if (contentType !== null && /^application\/([\w.+-]*\+)?json\b/i.test(contentType)) {
    try {
      return `json:${sha256Hex(canonicalJson(JSON.parse(Buffer.from(body).toString('utf8'))))}`;
    } catch (error) {
      // Not JSON after all: fingerprinted by its bytes below, as any body.
      void error;
    }
  }
  return `bytes:${createHash('sha256').update(body).digest('hex')}`;
}

function isStored(value: unknown): value is Stored {
  const v = value as Stored | undefined;
  return typeof v === 'object' && v !== null && typeof v.status === 'number' && Array.isArray(v.headers) && typeof v.body === 'string';
}

function token(name: string, value: unknown): string {
  if (typeof value !== 'string' || !TOKEN.test(value))
    throw new InvalidArgumentError(`${name} must be an HTTP header name, got ${JSON.stringify(String(value))}`);
  return value;
}

function bytes(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(`${name} must be a whole number greater than 0`);
  return value;
}

function whole(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new InvalidArgumentError(`${name} must be a whole number, 0 or more`);
  return value;
}

export type { ProblemCode };
