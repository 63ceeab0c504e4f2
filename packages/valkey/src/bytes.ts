// The record's JSON bytes as the scripts store them, made and cut here without a parse: the
// claim's head (its constant part, encoded once on the client so the script only appends
// numbers), the bytes of a fast-path claim, and the finished record cut from the lease's bytes.
import { RECORD_VERSION, sortedObject, type ClaimInput, type Lease } from '@idem/core/adapter';

/** The claim's constant part, up to the fence: the script appends the numbers. */
export function claimHead(input: ClaimInput): string {
  return `{"v":${RECORD_VERSION},"key":${JSON.stringify(input.recordKey)},"status":"in_flight","runId":${JSON.stringify(input.runId)},"fence":`;
}

/** The claim's fingerprint field, or '' without one. */
export function fingerprintPart(input: ClaimInput): string {
  return input.fingerprint !== undefined ? `,"fingerprint":${JSON.stringify(input.fingerprint)}` : '';
}

/** The claim's labels field (names sorted), or '' without labels. */
export function labelsPart(input: ClaimInput): string {
  return input.labels !== undefined ? `,"labels":${sortedObject(input.labels)}` : '';
}

/** The claim's holder field (names sorted); the driver holds one. */
export class HolderBytes {
  private lastHolder: { holder: object; part: string } | undefined;

  /** `,"holder":{...}`, encoded once for the process's own holder (every claim but those naming a program). */
  part(holder: ClaimInput['holder']): string {
    if (holder === undefined) return '';
    if (this.lastHolder?.holder === holder) return this.lastHolder.part;
    const part = `,"holder":${sortedObject(holder as unknown as Record<string, unknown>)}`;
    this.lastHolder = { holder, part };
    return part;
  }
}

/** The bytes a fast-path claim stored, as the script built them from its parts at the server's time `at`. */
export function acquiredBytes(head: string, fpPart: string, at: number, leaseExpiresAt: number, holderPart: string, labelsPart: string): string {
  const text = String(at); // converted once: a 13-digit number's text is not cheap
  return `${head}${text},"attempt":1${fpPart},"claimedAt":${text},"leaseExpiresAt":${leaseExpiresAt}${holderPart}${labelsPart}}`;
}

/**
 * The finished record around its two server times, made from the in_flight bytes the lease holds
 * (`version`): `"status":"in_flight"` becomes the final status, `,"leaseExpiresAt":<digits>` gives
 * way to completedAt and expiresAt, and what followed it (the holder and labels, nothing else:
 * checked) stays, before the tail. Both markers are found at their field: inside a JSON string a
 * quote is always escaped, so neither can occur there. Undefined when the lease carries no such
 * bytes (a lease from an older release, or made by hand) or a record of another shape.
 */
export function finishedParts(lease: Lease, status: 'succeeded' | 'failed', tail: string): [string, string] | undefined {
  const raw = lease.version;
  const r = lease.record;
  if (typeof raw !== 'string' || r.completedAt !== undefined || r.expiresAt !== undefined || r.result !== undefined || r.error !== undefined) return undefined;
  const s = raw.indexOf(IN_FLIGHT);
  const e = raw.lastIndexOf(LEASE_FIELD);
  if (s < 0 || e < s) return undefined;
  const end = digitsEnd(raw, e + LEASE_FIELD.length);
  const rest = raw.slice(end, -1);
  if (end === e + LEASE_FIELD.length || raw.charCodeAt(raw.length - 1) !== 0x7d) return undefined; // no digits, or no '}'
  if (rest !== '' && !rest.startsWith(HOLDER_FIELD) && !rest.startsWith(LABELS_FIELD)) return undefined;
  return [`${raw.slice(0, s)}"status":"${status}"${raw.slice(s + IN_FLIGHT.length, e)},"completedAt":`, rest + tail];
}

const IN_FLIGHT = '"status":"in_flight"';
const LEASE_FIELD = ',"leaseExpiresAt":';
const HOLDER_FIELD = ',"holder":{';
const LABELS_FIELD = ',"labels":{';

/** Where the digits starting at `at` end (a loop: a regex on a slice costs more). */
function digitsEnd(raw: string, at: number): number {
  let i = at;
  for (let c = raw.charCodeAt(i); c >= 0x30 && c <= 0x39; c = raw.charCodeAt(++i)); // '0'..'9'
  return i;
}
