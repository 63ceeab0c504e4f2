// `@idem/core/adapter`: everything an adapter author needs, on top of the
// user API (re-exported, so that one import serves an adapter).
export * from './index.js';
export { backendError } from './errors.js';
export { PROCESS_HOLDER } from './holder.js';
export { parseRecord, RECORD_LAYOUT, sortedObject, serializeRecord, STATUSES, type FieldKind } from './record.js';
export { decideClaim, decideFinish, isSweepable, leaseOf, type ClaimInput, type FinishOp, type FinishValue, type Step } from './decide.js';
export type { Driver, DriverContext, ListQuery } from './driver.js';
export { casUpdate, claimWith, finishWith, CONFLICT, type AtomicUpdate, type CasPrimitives, type Conflict, type Guess } from './atomic.js';
export { scanList, scanSweep, STORAGE_NAME, type ScanEntry, type ScanPage, type ScanPrimitives, type Versioned } from './scan.js';
export { composeDriver, createStore, type CasParts, type DriverSource, type TransactionalParts } from './factory.js';
export { resolveStoreOptions, type ResolvedStoreOptions } from './store.js';
export { ServerClock, serverClockOption } from './clock.js';
export { DueQueue, type Pending } from './queue.js';
export { assertClaimGuarantees, probeCas, probeOnce, type ProbePrimitives, type ProbeResult } from './capability.js';
export {
  describeValue,
  summarizeError,
  validateBoolean,
  validateDedupOn,
  validateDuration,
  validateLeaseMs,
  validateResult,
  validateRunId,
  validateSize,
  MAX_ERROR_LENGTH,
  MAX_FINGERPRINT_LENGTH,
  MAX_RUN_ID_LENGTH,
  MAX_TIMER_MS,
} from './validate.js';
