// The user API: build nothing here, use a store an adapter opened. What
// adapter authors need (Driver, decisions, compare-and-swap, scanning) is
// on the `@idem/core/adapter` subpath.
export {
  IdemError,
  isIdemError,
  InvalidKeyError,
  InvalidArgumentError,
  InvalidStoreUrlError,
  KeyReuseError,
  LeaseLostError,
  InFlightError,
  CorruptRecordError,
  BackendUnavailableError,
  BackendRefusedError,
  UnsafeBackendError,
  type Guarantee,
  type IdemErrorCode,
} from './errors.js';
export { RECORD_VERSION, isExpired, isLeaseDead, type Holder, type IdemRecord, type JsonValue, type Labels, type Status } from './record.js';
export type { ClaimOutcome, DedupOn, Lease } from './decide.js';
export type { Capabilities, CorruptEntry, ListPage, SweepCounts } from './driver.js';
export {
  IdempotencyStore,
  DEFAULT_LEASE_MS,
  DEFAULT_RETENTION_MS,
  DEFAULT_MAX_RESULT_BYTES,
  type ClaimOptions,
  type ListOptions,
  type StoreOptions,
} from './store.js';
export { channels as idemChannels, type IdemEvent, type IdemOperation } from './events.js';
export { runOnce, type OnInFlight, type RunContext, type RunOptions, type RunResult } from './runner.js';
export { canonicalJson, deriveKey, fingerprint, sha256Hex, storageName } from './keys.js';
export {
  MAX_DURATION_MS,
  MAX_KEY_BYTES,
  MAX_LABELS,
  MIN_LEASE_MS,
  parseDuration,
  validateFingerprint,
  validateKey,
  validateLabels,
  validateProgram,
} from './validate.js';
