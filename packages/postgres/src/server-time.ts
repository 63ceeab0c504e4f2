// The server's clock in the store: core decides at the time the server gave (PinnedClock), and a
// one-statement write carries a record core decided with its times left for the server to fill
// in (atServerTime, read by timed in sql.ts); with the indexed columns that go with a record.
import { IdemError, RECORD_LAYOUT, ServerClock, serializeRecord, type IdemRecord, type Labels } from '@idem/core/adapter';
import type { Shape } from './sql.js';

/** The server's time while a decision runs; this machine's estimate of it otherwise. */
export class PinnedClock {
  readonly estimate = new ServerClock();
  private pinned: number | undefined;
  readonly now = (): number => this.pinned ?? this.estimate.now();

  /** Runs a synchronous decision at the server's time `now`. */
  at<T>(now: number, decide: () => T): T {
    this.pinned = now;
    try {
      return decide();
    } finally {
      this.pinned = undefined;
    }
  }
}

/** What the indexed columns hold for a record (see sql.ts). */
export function columns(record: IdemRecord): [number | null, number | null, string | null] {
  return [record.expiresAt ?? null, sweepAt(record), labelsJson(record.labels)];
}

/** When sweep may remove the record: its retention end, or its lease deadline while in flight, whichever is first. */
function sweepAt(record: IdemRecord): number | null {
  const { expiresAt } = record;
  if (record.status !== 'in_flight') return expiresAt ?? null;
  const lease = record.leaseExpiresAt ?? 0;
  return expiresAt === undefined ? lease : Math.min(expiresAt, lease);
}

/** Labels as the labels column holds them: jsonb holds no NUL, so "\" and NUL are escaped (one way, only for matching). */
export function labelsJson(labels: Labels | undefined): string | null {
  if (labels === undefined) return null;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) out[k] = v.replaceAll('\\', '\\\\').replaceAll('\0', '\\0');
  return JSON.stringify(out);
}

/** Far from 0: a time field differs by exactly this between the two probes. */
const PROBE = 2 ** 40;
const MARK = 'idem:time';
/** Where a marked field stands in the record's bytes: `"field":"mark"`. */
const CUT = Object.fromEntries(RECORD_LAYOUT.map(([field]) => [field, `"${field}":${JSON.stringify(MARK)}`])) as Record<keyof IdemRecord, string>;

/** A record to write at the server's time: its shape (which statement) and that statement's values from $2 on. */
interface AtServerTime {
  shape: Shape;
  values: unknown[];
}

/**
 * The values `timed` (sql.ts) reads for the record core decides at the server's time `now`:
 * decided at two times, the fields that differ by exactly those times are `now` plus an offset;
 * the record's bytes (the one layout) are cut where each stands, as `"field":"mark"` (a quote
 * cannot stand unescaped inside a JSON string, so only there). Undefined when the decision's
 * shape itself depends on the time, or it writes nothing: the transaction decides then.
 */
export function atServerTime(decide: (now: number) => IdemRecord | undefined): AtServerTime | undefined {
  let a: IdemRecord | undefined;
  let b: IdemRecord | undefined;
  try {
    a = decide(0);
    b = decide(PROBE);
  } catch (error) {
    if (error instanceof IdemError) return undefined; // refused on the guess: the transaction decides on the truth
    throw error;
  }
  if (a === undefined || b === undefined) return undefined;
  const marked: Record<string, unknown> = { ...b };
  const timed: (keyof IdemRecord)[] = [];
  for (const [field] of RECORD_LAYOUT) {
    const x = a[field];
    const y = b[field];
    if (x === y) continue;
    if (typeof x !== 'number' || typeof y !== 'number' || y - x !== PROBE) return undefined;
    timed.push(field);
    marked[field] = MARK;
  }
  const expires = offset(a.expiresAt ?? null, b.expiresAt ?? null);
  const sweep = offset(sweepAt(a), sweepAt(b));
  if (expires === undefined || sweep === undefined) return undefined;
  const bytes = serializeRecord(marked as unknown as IdemRecord);
  const values: unknown[] = [];
  let from = 0;
  for (const field of timed) {
    const cut = CUT[field];
    const at = bytes.indexOf(cut, from);
    if (at < 0) return undefined;
    values.push(bytes.slice(from, at + field.length + 3), a[field]);
    from = at + cut.length;
  }
  values.push(bytes.slice(from), expires[0], sweep[0], labelsJson(a.labels));
  return { shape: { fields: timed.length, expiresAfter: expires[1], sweepAfter: sweep[1] }, values };
}

/** A column decided at the two probes: a number as it is, or an offset from the server's time (true). */
function offset(x: number | null, y: number | null): [number | null, boolean] | undefined {
  if (x === y) return [x, false];
  return x !== null && y !== null && y - x === PROBE ? [x, true] : undefined;
}
