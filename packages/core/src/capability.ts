// Capability checks: a backend that claims to be S3-, GCS- or Redis-compatible
// may still ignore a precondition, and then two callers both "win" a key.
// An adapter declares a probe (here: the generic one over CAS primitives, or
// its own); core runs it once per target and refuses what cannot be fenced.
import type { CasPrimitives } from './atomic.js';
import { CONFLICT } from './atomic.js';
import { IdemError, UnsafeBackendError } from './errors.js';
import { RECORD_VERSION, serializeRecord } from './record.js';

/** What a probe measured. `deleteIfMatch` is undefined where the backend has no conditional delete to test. */
export interface ProbeResult {
  createIfAbsent: boolean;
  replaceIfMatch: boolean;
  deleteIfMatch: boolean | undefined;
}

/** CAS primitives plus the two deletes a probe needs to test and clean up. */
export interface ProbePrimitives extends CasPrimitives {
  /** Deletes only if the stored version is still `version` (S3 DELETE If-Match). */
  // biome-ignore lint/suspicious/noConfusingVoidType: resolves to nothing, or CONFLICT; implementations need not return undefined
  removeIf(name: string, version: string): Promise<void | typeof CONFLICT>;
  /** Unconditional delete, to leave nothing behind. */
  remove(name: string): Promise<void>;
}

const probeBody = (n: number) =>
  serializeRecord({
    v: RECORD_VERSION,
    key: 'idem-probe',
    status: 'succeeded',
    runId: `idem-probe-${n}`,
    fence: n,
    attempt: 1,
    claimedAt: 0,
    completedAt: 0,
    expiresAt: 0,
  });

/**
 * The generic probe over conditional writes, on one scratch name (not a
 * record name: 64 hex): 5 conditional writes, 1 read, 1 cleanup delete.
 *   create             -> version v
 *   create again       -> must be refused (if not, v is the version it wrote)
 *   replace on v       -> accepted: the server takes its own version
 *   replace on v again -> must be refused (v is stale now)
 *   delete on v        -> must leave the object (read it back)
 */
export async function probeCas(p: ProbePrimitives, name: string): Promise<ProbeResult> {
  const v1 = await p.create(name, probeBody(1));
  if (v1 === CONFLICT) throw new IdemError('BACKEND_UNAVAILABLE', `probe: scratch object ${name} already exists; retry the open`, { retryable: true });
  try {
    const again = await p.create(name, probeBody(2));
    const createIfAbsent = again === CONFLICT;
    // The current version: the second create's, if the server let it overwrite.
    const v = createIfAbsent ? v1 : again;
    const replaceIfMatch = (await p.replace(name, probeBody(3), v)) !== CONFLICT && (await p.replace(name, probeBody(4), v)) === CONFLICT;
    // Refused (CONFLICT) or not, what counts is whether the object is still there.
    await p.removeIf(name, v);
    const deleteIfMatch = (await p.read(name)) !== undefined;
    return { createIfAbsent, replaceIfMatch, deleteIfMatch };
  } finally {
    await p.remove(name);
  }
}

/** Throws UnsafeBackendError for a missing claim guarantee; `where` names the backend in the message. */
export function assertClaimGuarantees(result: ProbeResult, where: string): void {
  if (!result.createIfAbsent) {
    throw new UnsafeBackendError(
      'create-if-absent',
      `${where} ignores create-if-absent (a second create of one key was accepted): two callers would both acquire a key`,
    );
  }
  if (!result.replaceIfMatch) {
    throw new UnsafeBackendError(
      'replace-if-match',
      `${where} ignores replace-if-match (a write conditioned on a stale version was accepted): a takeover or finish could overwrite another owner`,
    );
  }
}

const probes = new Map<string, Promise<unknown>>();

/**
 * Runs `probe` once per `target` for this process; concurrent opens share one
 * run. A failed probe (unreachable, refused) is forgotten so the next open tries again.
 */
export function probeOnce<R extends ProbeResult>(target: string, probe: () => Promise<R>): Promise<R> {
  let running = probes.get(target) as Promise<R> | undefined;
  if (running === undefined) {
    running = probe();
    probes.set(target, running);
    running.catch(() => probes.delete(target));
  }
  return running;
}
