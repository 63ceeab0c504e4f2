import type { IdemRecord } from './record.js';

/** Stable machine-readable codes; never renamed once published. */
export type IdemErrorCode =
  | 'INVALID_KEY'
  | 'INVALID_ARGUMENT'
  | 'KEY_REUSE_MISMATCH'
  | 'LEASE_LOST'
  | 'IN_FLIGHT'
  | 'CORRUPT_RECORD'
  | 'BACKEND_UNAVAILABLE'
  | 'INVALID_STORE_URL'
  /** A store URL's scheme needs a package that is not installed (`@idem/core/url`). */
  | 'ADAPTER_MISSING';

export class IdemError extends Error {
  readonly code: IdemErrorCode;
  /** True when the same call may succeed later (network, throttling). */
  readonly retryable: boolean;
  constructor(code: IdemErrorCode, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options?.retryable ?? false;
  }
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
    super(
      'KEY_REUSE_MISMATCH',
      `key ${JSON.stringify(record.key)} was claimed with fingerprint ${record.fingerprint ?? '(none)'}, not ${fingerprint}`,
    );
    this.record = record;
  }
}

/** The lease was taken over (or the record removed): the caller must not act as owner. */
export class LeaseLostError extends IdemError {
  /** What the store holds now, if anything. */
  readonly record: IdemRecord | undefined;
  constructor(key: string, record: IdemRecord | undefined) {
    super(
      'LEASE_LOST',
      record
        ? `lease on ${JSON.stringify(key)} was lost: now held by run ${record.runId} (fence ${record.fence}, ${record.status})`
        : `lease on ${JSON.stringify(key)} was lost: the record is gone`,
    );
    this.record = record;
  }
}

/** Raised by the runner under onInFlight: 'throw'. */
export class InFlightError extends IdemError {
  readonly record: IdemRecord;
  constructor(record: IdemRecord) {
    super('IN_FLIGHT', `key ${JSON.stringify(record.key)} is being run by ${record.runId} until ${new Date(record.leaseExpiresAt ?? 0).toISOString()}`, { retryable: true });
    this.record = record;
  }
}

/** A stored value that cannot be parsed or has an unknown schema version; it is never overwritten. */
export class CorruptRecordError extends IdemError {
  readonly storageName: string;
  constructor(storageName: string, detail: string, cause?: unknown) {
    super('CORRUPT_RECORD', `record ${storageName} is corrupt: ${detail}`, { cause });
    this.storageName = storageName;
  }
}

/** The backend could not be reached or timed out; nothing may be assumed about the write. */
export class BackendUnavailableError extends IdemError {
  constructor(message: string, cause?: unknown) {
    super('BACKEND_UNAVAILABLE', message, { cause, retryable: true });
  }
}
