import { CorruptRecordError } from './errors.js';

/** Schema version written by this release. A record with another `v` is never overwritten. */
export const RECORD_VERSION = 1;

export type Status = 'in_flight' | 'succeeded' | 'failed';
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/** The stored record of one key (docs/semantics.md §1). Times are epoch milliseconds. */
export interface IdemRecord {
  v: typeof RECORD_VERSION;
  /** The caller's key verbatim, or `sha256:<hex>` when the store hashes keys. */
  key: string;
  status: Status;
  runId: string;
  /** Strictly increases on every (re)claim of the key. */
  fence: number;
  /** How many times the key has been claimed. */
  attempt: number;
  fingerprint?: string;
  claimedAt: number;
  /** Set while in_flight: when the claim may be taken over. */
  leaseExpiresAt?: number;
  completedAt?: number;
  /** When a finished record is forgotten (retention). */
  expiresAt?: number;
  result?: JsonValue;
  error?: string;
}

/** Every status, once: records are parsed and list filters checked against it. */
export const STATUSES: ReadonlySet<string> = new Set<Status>(['in_flight', 'succeeded', 'failed']);

/** How a field is encoded: a safe integer, a JSON string, or any JSON value. */
export type FieldKind = 'int' | 'string' | 'json';

/**
 * The record's one byte layout: its fields in the order every writer puts
 * them, each with its encoding (JSON, no whitespace, absent fields left out).
 * serializeRecord writes it; @idem/valkey generates its Lua encoder from it,
 * and a test there checks every record its scripts write against serializeRecord.
 */
export const RECORD_LAYOUT = [
  ['v', 'int'],
  ['key', 'string'],
  ['status', 'string'],
  ['runId', 'string'],
  ['fence', 'int'],
  ['attempt', 'int'],
  ['fingerprint', 'string'],
  ['claimedAt', 'int'],
  ['leaseExpiresAt', 'int'],
  ['completedAt', 'int'],
  ['expiresAt', 'int'],
  ['result', 'json'],
  ['error', 'string'],
] as const satisfies ReadonlyArray<readonly [keyof IdemRecord, FieldKind]>;

// Fails to compile when IdemRecord gains a field the layout does not place.
type Unplaced = Exclude<keyof IdemRecord, (typeof RECORD_LAYOUT)[number][0]>;
const everyFieldPlaced: [Unplaced] extends [never] ? true : Unplaced = true;
void everyFieldPlaced;

/** The record's bytes in RECORD_LAYOUT's order, whatever order its object has. */
export function serializeRecord(record: IdemRecord): string {
  let out = '{';
  for (const [name] of RECORD_LAYOUT) {
    const value = record[name];
    if (value === undefined) continue;
    out += `${out.length > 1 ? ',' : ''}"${name}":${JSON.stringify(value)}`;
  }
  return `${out}}`;
}

const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
const optInt = (x: unknown) => x === undefined || isInt(x);
const optStr = (x: unknown) => x === undefined || typeof x === 'string';

/**
 * Parses stored bytes. Anything unexpected, including a newer schema
 * version, is a CorruptRecordError so that no adapter overwrites it.
 */
export function parseRecord(storageName: string, raw: string | Uint8Array): IdemRecord {
  let value: unknown;
  try {
    value = JSON.parse(typeof raw === 'string' ? raw : new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch (cause) {
    throw new CorruptRecordError(storageName, 'not valid JSON', cause);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CorruptRecordError(storageName, 'not a JSON object');
  }
  const r = value as Record<string, unknown>;
  if (r.v !== RECORD_VERSION) throw new CorruptRecordError(storageName, `unknown schema version ${JSON.stringify(r.v)}`);
  const ok =
    typeof r.key === 'string' &&
    typeof r.status === 'string' &&
    STATUSES.has(r.status) &&
    typeof r.runId === 'string' &&
    isInt(r.fence) &&
    isInt(r.attempt) &&
    isInt(r.claimedAt) &&
    optStr(r.fingerprint) &&
    optStr(r.error) &&
    optInt(r.leaseExpiresAt) &&
    optInt(r.completedAt) &&
    optInt(r.expiresAt) &&
    (r.status !== 'in_flight' || isInt(r.leaseExpiresAt));
  if (!ok) throw new CorruptRecordError(storageName, 'fields missing or of the wrong type');
  return r as unknown as IdemRecord;
}

/** True when the record is past retention and counts as absent. */
export function isExpired(record: IdemRecord, now: number): boolean {
  return record.expiresAt !== undefined && record.expiresAt <= now;
}

/** True for an in_flight record whose owner may be taken over. */
export function isLeaseDead(record: IdemRecord, now: number): boolean {
  return record.status === 'in_flight' && (record.leaseExpiresAt ?? 0) <= now;
}
