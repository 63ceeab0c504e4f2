import type { IdemRecord } from './record.js';

/**
 * Stable machine-readable codes, one space for the library and the CLI; never
 * renamed once published. docs/semantics.md has the table (meaning, retry, exit code).
 */
export type IdemErrorCode =
  | 'INVALID_KEY'
  | 'INVALID_ARGUMENT'
  | 'KEY_REUSE_MISMATCH'
  | 'LEASE_LOST'
  | 'IN_FLIGHT'
  | 'CORRUPT_RECORD'
  /** The backend could not be reached or did not answer in time: retry. */
  | 'BACKEND_UNAVAILABLE'
  /** The backend answered no (credentials, permission, missing bucket): fix the setup, do not retry. */
  | 'BACKEND_REFUSED'
  /** The backend ignores a precondition idem's safety rests on: use another server or setting. */
  | 'UNSAFE_BACKEND'
  | 'INVALID_STORE_URL'
  /** A store URL's scheme needs a package that is not installed (`@idem/core/url`). */
  | 'ADAPTER_MISSING'
  /** The CLI's: unknown command or flag, missing or malformed argument. */
  | 'USAGE'
  /** The CLI's: the command could not be started (not found, not executable). */
  | 'SPAWN_FAILED'
  /** A bug or an unexpected fault. */
  | 'INTERNAL';

/**
 * Marks every IdemError with the names of its classes, under a registry-wide
 * symbol: two copies of @idem/core in one process (an adapter's next to the
 * app's) then still recognise each other's errors with `instanceof`.
 */
const BRAND: unique symbol = Symbol.for('@idem/core.IdemError') as never;

export class IdemError extends Error {
  readonly code: IdemErrorCode;
  /** True when the same call may succeed later (network, throttling). */
  readonly retryable: boolean;
  constructor(code: IdemErrorCode, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options?.retryable ?? false;
    const kinds: string[] = [];
    for (let c: unknown = new.target; typeof c === 'function' && c !== Error; c = Object.getPrototypeOf(c)) kinds.push((c as { name: string }).name);
    Object.defineProperty(this, BRAND, { value: Object.freeze(kinds), enumerable: false });
  }

  /** `e instanceof IdemError` (or any subclass) holds for errors from another copy of @idem/core too. */
  static [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    if (typeof value !== 'object' || value === null) return false;
    const kinds = (value as { [BRAND]?: unknown })[BRAND];
    return Array.isArray(kinds) && kinds.includes(this.name);
  }
}

/** True for an IdemError from any copy of @idem/core, with the given code if one is given. */
export function isIdemError(error: unknown, code?: IdemErrorCode): error is IdemError {
  return error instanceof IdemError && (code === undefined || error.code === code);
}

export class InvalidKeyError extends IdemError {
  constructor(message: string) {
    super('INVALID_KEY', message);
  }
}

export class InvalidArgumentError extends IdemError {
  constructor(message: string, cause?: unknown) {
    super('INVALID_ARGUMENT', message, { cause });
  }
}

export class InvalidStoreUrlError extends IdemError {
  constructor(message: string, cause?: unknown) {
    super('INVALID_STORE_URL', message, { cause });
  }
}

/** The key was used before with a different fingerprint (Stripe / IETF draft: 422). */
export class KeyReuseError extends IdemError {
  readonly record: IdemRecord;
  constructor(record: IdemRecord, fingerprint: string) {
    super('KEY_REUSE_MISMATCH', `key ${JSON.stringify(record.key)} was claimed with fingerprint ${record.fingerprint ?? '(none)'}, not ${fingerprint}`);
    this.record = record;
  }
}

/** The lease was taken over (or the record removed): the caller must not act as owner. */
export class LeaseLostError extends IdemError {
  /** What the store holds now, if anything. */
  readonly record: IdemRecord | undefined;
  /**
   * Set when another run holds this lease's very fence and was claimed while
   * this lease was live: a backend that kept its preconditions never allows
   * that (unless someone deleted the record by hand), so the work may have run twice.
   */
  readonly suspectedBrokenGuarantee: 'create-if-absent' | 'replace-if-match' | undefined;
  constructor(key: string, record: IdemRecord | undefined, suspectedBrokenGuarantee?: 'create-if-absent' | 'replace-if-match') {
    super(
      'LEASE_LOST',
      (record
        ? `lease on ${JSON.stringify(key)} was lost: now held by run ${record.runId} (fence ${record.fence}, ${record.status})`
        : `lease on ${JSON.stringify(key)} was lost: the record is gone`) +
        (suspectedBrokenGuarantee
          ? `; WARNING: that run holds the same fence and was claimed while this lease was live, so the backend accepted a write whose ${suspectedBrokenGuarantee} precondition should have failed and the work may have run twice; unless the record was deleted by hand, this backend is not safe for idem`
          : ''),
    );
    this.record = record;
    this.suspectedBrokenGuarantee = suspectedBrokenGuarantee;
  }
}

/** Raised by the runner under onInFlight: 'throw'. */
export class InFlightError extends IdemError {
  readonly record: IdemRecord;
  constructor(record: IdemRecord) {
    super('IN_FLIGHT', `key ${JSON.stringify(record.key)} is being run by ${record.runId} until ${new Date(record.leaseExpiresAt ?? 0).toISOString()}`, {
      retryable: true,
    });
    this.record = record;
  }
}

/**
 * A stored value that cannot be parsed, has an unknown schema version, or
 * cannot be claimed again (fence at its maximum); it is never overwritten.
 */
export class CorruptRecordError extends IdemError {
  /**
   * The record's storage name: sha256(key) in hex, as `storageName(key)`
   * returns it (never a backend prefix or path). For a whole store that is
   * unreadable (an LMDB file), the store's path.
   */
  readonly storageName: string;
  constructor(storageName: string, detail: string, cause?: unknown) {
    super('CORRUPT_RECORD', `record ${storageName} is corrupt: ${detail}`, { cause });
    this.storageName = storageName;
  }
}

/** The backend could not be reached or timed out; nothing may be assumed about the write. Retryable. */
export class BackendUnavailableError extends IdemError {
  constructor(message: string, cause?: unknown) {
    super('BACKEND_UNAVAILABLE', message, { cause, retryable: true });
  }
}

/**
 * The backend answered and refused (bad credentials, no permission, missing
 * bucket, bad request): nothing was written, and the same call will fail
 * again until someone fixes the setup. Not retryable.
 */
export class BackendRefusedError extends IdemError {
  constructor(message: string, cause?: unknown) {
    super('BACKEND_REFUSED', message, { cause, retryable: false });
  }
}

/** The conditional operations idem's safety rests on. */
export type Guarantee =
  /** A second create of one name is refused (S3 If-None-Match: *, GCS ifGenerationMatch=0, SET NX). */
  | 'create-if-absent'
  /** A replace conditioned on a stale version is refused, and one on the current version (as the server returned it) is accepted. */
  | 'replace-if-match'
  /** A delete conditioned on a stale version is refused (sweep relies on it). */
  | 'delete-if-match'
  /** A write can be acknowledged only once it is fsynced (Valkey/Redis WAITAOF; a store's `fsync` option asks for it). */
  | 'fsync-ack';

/**
 * The backend does not keep a guarantee idem needs: using it could run one
 * key's work twice. Never retryable: the server (or its configuration) must
 * change, not the timing.
 */
export class UnsafeBackendError extends IdemError {
  readonly guarantee: Guarantee;
  constructor(guarantee: Guarantee, message: string, cause?: unknown) {
    super('UNSAFE_BACKEND', message, { cause, retryable: false });
    this.guarantee = guarantee;
  }
}

/** The package a store URL's scheme needs is not installed; `install` says what to install. */
export class AdapterMissingError extends IdemError {
  readonly install: string;
  constructor(scheme: string, install: string, cause?: unknown) {
    super('ADAPTER_MISSING', `${scheme}: stores need ${install}, which is not installed: npm install ${install}`, { cause });
    this.install = install;
  }
}

/**
 * The one mapping from a backend client's failure to a typed error, used by
 * every adapter: an IdemError passes through; otherwise the adapter says
 * whether the backend refused (not retryable) or could not be reached.
 */
export function backendError(error: unknown, what: string, refused: boolean): IdemError {
  if (error instanceof IdemError) return error;
  return refused ? new BackendRefusedError(`${what}: refused (${detailOf(error)})`, error) : new BackendUnavailableError(`${what}: ${detailOf(error)}`, error);
}

/** A thrown value's message, whatever was thrown (never throws itself). */
function detailOf(error: unknown): string {
  try {
    return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  } catch (cause) {
    // A hostile getter or toString: say so rather than fail while reporting a failure.
    return `unprintable ${typeof error} (${cause instanceof Error ? cause.name : 'error'})`;
  }
}
