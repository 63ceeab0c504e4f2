// The record's JSON bytes as the scripts store them, made and cut here without a parse: the
// claim's head (its constant part, encoded once on the client so the script only appends
// numbers), the bytes of a fast-path claim, and the finished record cut from the lease's bytes.
import { RECORD_VERSION, type ClaimInput, type Lease } from '@idem/core/adapter';

/** The claim's constant part, up to the fence: the script appends the numbers. */
export function claimHead(input: ClaimInput): string {
  return `{"v":${RECORD_VERSION},"key":${JSON.stringify(input.recordKey)},"status":"in_flight","runId":${JSON.stringify(input.runId)},"fence":`;
}

/** The claim's fingerprint field, or '' without one. */
export function fingerprintPart(input: ClaimInput): string {
  return input.fingerprint !== undefined ? `,"fingerprint":${JSON.stringify(input.fingerprint)}` : '';
}

/** The bytes a fast-path claim stored, as the script built them from `head` and `fpPart` at the server's time `at`. */
export function acquiredBytes(head: string, fpPart: string, at: number, leaseExpiresAt: number): string {
  const text = String(at); // converted once: a 13-digit number's text is not cheap
  return `${head}${text},"attempt":1${fpPart},"claimedAt":${text},"leaseExpiresAt":${leaseExpiresAt}}`;
}

/**
 * The finished record around its two server times, made from the in_flight bytes the lease holds
 * (`version`): `"status":"in_flight"` becomes the final status, and everything from
 * `,"leaseExpiresAt":` on gives way to completedAt, expiresAt and the tail. Both markers are
 * found at their field: inside a JSON string a quote is always escaped, so neither can occur there.
 * Undefined when the lease carries no such bytes (a lease from an older release, or made by hand).
 */
export function finishedParts(lease: Lease, status: 'succeeded' | 'failed', tail: string): [string, string] | undefined {
  const raw = lease.version;
  if (typeof raw !== 'string') return undefined;
  const s = raw.indexOf(IN_FLIGHT);
  const e = raw.lastIndexOf(LEASE_FIELD);
  if (s < 0 || e < s || !leaseEndAt(raw, e)) return undefined;
  return [`${raw.slice(0, s)}"status":"${status}"${raw.slice(s + IN_FLIGHT.length, e)},"completedAt":`, tail];
}

const IN_FLIGHT = '"status":"in_flight"';
const LEASE_FIELD = ',"leaseExpiresAt":';

/** True when `raw` ends with `,"leaseExpiresAt":<digits>}` from `at` on (a loop: a regex on a slice costs more). */
function leaseEndAt(raw: string, at: number): boolean {
  const last = raw.length - 1;
  if (last <= at + LEASE_FIELD.length || raw.charCodeAt(last) !== 0x7d) return false; // '}'
  for (let i = at + LEASE_FIELD.length; i < last; i++) {
    const c = raw.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false; // '0'..'9'
  }
  return true;
}
