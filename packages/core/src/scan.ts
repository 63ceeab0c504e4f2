// list() and sweep() for stores that can enumerate their records in name
// order (object stores, LMDB): the adapter supplies scan, read and delete
// primitives, and the algorithm, cursor, tallies and corrupt-record policy
// live here once.
import { isSweepable } from './decide.js';
import type { CorruptEntry, DriverContext, ListPage, ListQuery, SweepCounts } from './driver.js';
import { CorruptRecordError, InvalidArgumentError } from './errors.js';
import { isExpired, type IdemRecord } from './record.js';

/** A record's storage name: sha256(key) in lowercase hex. Anything else a scan meets is not ours. */
export const STORAGE_NAME = /^[0-9a-f]{64}$/;

/** One name a scan met, with what the listing already tells about it. */
export interface ScanEntry {
  /** The name relative to the store's prefix. Not filtered: core skips anything that is not a storage name. */
  name: string;
  /** The version listed (GCS generation), read and deleted at exactly that version. */
  version?: string;
  /** When the record may become sweepable (GCS customTime); sweep skips it unread until then. */
  sweepAt?: number;
}

export interface ScanPage {
  entries: ScanEntry[];
  /** Pass as `after` to get the next page (the last name this page covered); absent when the scan is done. */
  next?: string;
}

/** A record with the version it was read at (ETag, generation); stores without versions leave it out. */
export interface Versioned {
  record: IdemRecord;
  version?: string;
}

/** What a store provides for core to list and sweep it. */
export interface ScanPrimitives {
  /** Names strictly after `after` (all when undefined) in ascending byte order, about `limit` of them. */
  scan(after: string | undefined, limit: number): Promise<ScanPage>;
  /** The record (at `version` when given); undefined when absent; CorruptRecordError for unreadable bytes. */
  read(name: string, version?: string): Promise<Versioned | undefined>;
  /**
   * With `expected`: deletes only if the stored record is still that one
   * (same version, or the same record where the store has no versions), in
   * one atomic step; false if it changed or is gone. Without: unconditional
   * administrative removal; whether something was there.
   */
  delete(name: string, expected?: Versioned): Promise<boolean>;
  /** Reads in flight at once while listing or sweeping. Default 16. */
  concurrency?: number;
}

const SCAN_PAGE = 1000;
const DEFAULT_CONCURRENCY = 16;

/** Reads names in batches, in order; a corrupt record becomes a CorruptEntry instead of an error. */
async function* readAll(p: ScanPrimitives, entries: ScanEntry[]): AsyncGenerator<{ entry: ScanEntry; found?: Versioned; corrupt?: CorruptEntry }> {
  const n = p.concurrency ?? DEFAULT_CONCURRENCY;
  for (let i = 0; i < entries.length; i += n) {
    const batch = await Promise.all(
      entries.slice(i, i + n).map(async (entry) => {
        try {
          const found = await p.read(entry.name, entry.version);
          return found === undefined ? { entry } : { entry, found };
        } catch (error) {
          if (!(error instanceof CorruptRecordError)) throw error;
          return { entry, corrupt: { name: entry.name, reason: error.message } };
        }
      }),
    );
    yield* batch;
  }
}

/**
 * One page of records passing `query.filter`, in name order. The cursor is
 * the storage name of the last record returned; the next page starts
 * strictly after it. Corrupt records met on the way are named in `corrupt`
 * and the listing goes on: one bad record hides no other.
 */
export async function scanList(p: ScanPrimitives, query: ListQuery): Promise<ListPage> {
  if (query.cursor !== undefined && !STORAGE_NAME.test(query.cursor)) throw new InvalidArgumentError('cursor must be a string from a previous page');
  const records: IdemRecord[] = [];
  const corrupt: CorruptEntry[] = [];
  const page = (cursor?: string): ListPage => ({ records, ...(corrupt.length > 0 ? { corrupt } : {}), ...(cursor !== undefined ? { cursor } : {}) });
  let after = query.cursor;
  for (;;) {
    const scanned = await p.scan(after, SCAN_PAGE);
    const ours = scanned.entries.filter((e) => STORAGE_NAME.test(e.name) && (after === undefined || e.name > after));
    let left = ours.length;
    for await (const { entry, found, corrupt: bad } of readAll(p, ours)) {
      left--;
      if (bad) corrupt.push(bad);
      else if (found !== undefined && query.filter(found.record)) records.push(found.record);
      else continue;
      if (records.length === query.limit) {
        // The rest of this batch was read ahead; it is read again on the next page.
        return left > 0 || scanned.next !== undefined ? page(entry.name) : page();
      }
    }
    if (scanned.next === undefined) return page();
    after = scanned.next;
  }
}

/**
 * Removes records past retention and in_flight records with a dead lease,
 * each deleted only if unchanged since it was read (a record renewed or
 * re-claimed meanwhile stays). Corrupt records are left for a human: sweep
 * never deletes what it cannot read.
 */
export async function scanSweep(p: ScanPrimitives, ctx: DriverContext): Promise<SweepCounts> {
  const counts: SweepCounts = { expired: 0, deadLeases: 0 };
  let after: string | undefined;
  for (;;) {
    const scanned = await p.scan(after, SCAN_PAGE);
    const now = ctx.now();
    const due = scanned.entries.filter(
      (e) => STORAGE_NAME.test(e.name) && (after === undefined || e.name > after) && (e.sweepAt === undefined || e.sweepAt <= now),
    );
    const found: { entry: ScanEntry; found: Versioned }[] = [];
    for await (const read of readAll(p, due)) if (read.found !== undefined) found.push({ entry: read.entry, found: read.found }); // absent, or corrupt: left for a human
    const n = p.concurrency ?? DEFAULT_CONCURRENCY;
    for (let i = 0; i < found.length; i += n) {
      await Promise.all(
        found.slice(i, i + n).map(async ({ entry, found: f }) => {
          const at = ctx.now();
          if (!isSweepable(f.record, at) || !(await p.delete(entry.name, f))) return;
          if (isExpired(f.record, at)) counts.expired++;
          else counts.deadLeases++;
        }),
      );
    }
    if (scanned.next === undefined) return counts;
    after = scanned.next;
  }
}
