// The open-time probe: S3-compatible servers differ in exactly the guarantees
// idem rests on (README "Compatibility"). Before a store is used, check that
// the bucket exists and that conditional writes are kept; refuse a server
// that would let two callers win one key. Once per endpoint, bucket and prefix per process.
import { randomUUID } from 'node:crypto';
import { DeleteObjectCommand, HeadBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  assertClaimGuarantees,
  BackendRefusedError,
  probeCas,
  probeOnce,
  UnsafeBackendError,
  type CasPrimitives,
  type Conflict,
  type ProbeResult,
} from '@idem/core/adapter';
import { s3Failure } from './index.js';

/** What a store knows of its server's conditional writes; undefined: not yet known. */
export interface S3Compat {
  /** If-Match takes the ETag in the other form than the server returns it (quoted vs unquoted). */
  etagToggled: boolean | undefined;
  /** DELETE If-Match with a stale ETag leaves the object. */
  deleteIfMatch: boolean | undefined;
}

/** The parts of the store's driver the probe runs on. */
interface S3Driver {
  readonly cas: CasPrimitives;
  readonly compat: S3Compat;
  send<T>(command: DeleteObjectCommand | HeadBucketCommand): Promise<T>;
  conflictOr(error: unknown, what: string): Conflict;
  ifMatch(etag: string): string;
}

type S3Probe = ProbeResult & { etagToggled: boolean | undefined };

/**
 * 8 requests: HEAD bucket, 5 conditional writes on a scratch object
 * `<prefix>.idem-probe-<uuid>` (never a record name), 1 GET, 1 DELETE to remove it.
 * Throws BACKEND_UNAVAILABLE (not retryable) for a missing bucket,
 * UnsafeBackendError for a server that ignores If-None-Match or If-Match on PUT.
 */
export async function probeS3(driver: S3Driver, client: S3Client, bucket: string, prefix: string): Promise<S3Compat> {
  const result = await probeOnce(await targetOf(client, bucket, prefix), async (): Promise<S3Probe> => {
    // Some servers (SeaweedFS with auto-create) create a missing bucket on the first PUT: a claim must never do that.
    try {
      await driver.send(new HeadBucketCommand({ Bucket: bucket }));
    } catch (error) {
      const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404) {
        throw new BackendRefusedError(`S3 bucket ${bucket} does not exist (checked when the store opened; idem never creates buckets)`, error);
      }
      throw s3Failure(error, `HEAD bucket ${bucket}`);
    }
    const found = await probeCas(
      {
        ...driver.cas,
        removeIf: async (name, version) => {
          try {
            await driver.send(new DeleteObjectCommand({ Bucket: bucket, Key: prefix + name, IfMatch: driver.ifMatch(version) }));
          } catch (error) {
            return driver.conflictOr(error, `DELETE If-Match ${name}`);
          }
          return undefined;
        },
        remove: async (name) => {
          try {
            await driver.send(new DeleteObjectCommand({ Bucket: bucket, Key: prefix + name }));
          } catch (error) {
            throw s3Failure(error, `DELETE ${name}`);
          }
        },
      },
      `.idem-probe-${randomUUID()}`,
    );
    return { ...found, etagToggled: driver.compat.etagToggled };
  });
  assertClaimGuarantees(result, `S3 server of bucket ${bucket}`);
  return { etagToggled: result.etagToggled, deleteIfMatch: result.deleteIfMatch };
}

/** Where the store's requests go: the client's endpoint (or AWS's region), bucket and prefix. Never credentials. */
async function targetOf(client: S3Client, bucket: string, prefix: string): Promise<string> {
  const config = client.config as unknown as {
    endpoint?: () => Promise<{ protocol: string; hostname: string; port?: number; path: string }>;
    region: () => Promise<string>;
  };
  const endpoint = config.endpoint ? await config.endpoint() : undefined;
  const where = endpoint ? `${endpoint.protocol}//${endpoint.hostname}:${endpoint.port ?? ''}${endpoint.path}` : `aws:${await config.region()}`;
  return JSON.stringify([where, bucket, prefix]);
}

export function unsafeSweep(bucket: string, prefix: string): UnsafeBackendError {
  return new UnsafeBackendError(
    'delete-if-match',
    `S3 sweep of ${bucket}/${prefix} refused: this server deleted an object under a stale If-Match when the store opened, ` +
      'so sweep could delete a record that a claim rewrote an instant earlier, and that key could then run twice. ' +
      'Expire records with a lifecycle rule instead, or pass unconditionalSweep: true (CLI: unconditional_sweep=true) and sweep when the keys are quiet',
  );
}
