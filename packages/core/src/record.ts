import { CorruptRecordError } from './errors.js';

/** Schema version written by this release. A record with another `v` is never overwritten. */
export const RECORD_VERSION = 1;

export type Status = 'in_flight' | 'succeeded' | 'failed';
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/**
 * Who made a claim: kept on the record while it runs and after it finished. Never the
 * command's arguments (they carry secrets): `program` is a basename only.
 */
export interface Holder {
  /** os.hostname() of the claiming process. */
  host: string;
  pid: number;
  /** The version of @idem/core that made the claim. */
  version: string;
  /** What runs, e.g. the basename of the command `idem run` started. */
  program?: string;
}

/** A small string-to-string map, to tag and later find runs (`list({ labels })`). */
export type Labels = Record<string, string>;

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
  /** Who made the claim; absent on records written before holders were recorded. */
  holder?: Holder;
  labels?: Labels;
  result?: JsonValue;
  error?: string;
}

/** Every status, once: records are parsed and list filters checked against it. */
export const STATUSES: ReadonlySet<string> = new Set<Status>(['in_flight', 'succeeded', 'failed']);

/**
 * How a field is encoded: a safe integer, a JSON string, a flat object of strings and
 * integers written with its names sorted (so that every writer, Lua's included, gives the
 * same bytes), or any JSON value (the result, as the caller's JSON text).
 */
export type FieldKind = 'int' | 'string' | 'object' | 'json';

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
  ['holder', 'object'],
  ['labels', 'object'],
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
  for (const [name, kind] of RECORD_LAYOUT) {
    const value = record[name];
    if (value === undefined) continue;
    out += `${out.length > 1 ? ',' : ''}"${name}":${kind === 'object' ? sortedObject(value as Record<string, unknown>) : JSON.stringify(value)}`;
  }
  return `${out}}`;
}

/** A flat object's JSON with its names in code-unit order (Lua's string comparison is byte order, the same for these names). */
export function sortedObject(value: Record<string, unknown>): string {
  let out = '{';
  for (const name of Object.keys(value).sort()) out += `${out.length > 1 ? ',' : ''}${JSON.stringify(name)}:${JSON.stringify(value[name])}`;
  return `${out}}`;
}

const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
const optInt = (x: unknown) => x === undefined || isInt(x);
const optStr = (x: unknown) => x === undefined || typeof x === 'string';
const isPlain = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const optHolder = (x: unknown) =>
  x === undefined || (isPlain(x) && typeof x.host === 'string' && isInt(x.pid) && typeof x.version === 'string' && optStr(x.program));
const optLabels = (x: unknown) => x === undefined || (isPlain(x) && Object.values(x).every((v) => typeof v === 'string'));

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
    optHolder(r.holder) &&
    optLabels(r.labels) &&
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
