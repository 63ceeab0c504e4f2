// Tiered stores on real servers for the tiered tests: a Valkey front (scripts/servers/redis.sh)
// with a MinIO, fake-gcs-server or PostgreSQL archive. A missing server is a loud skip, a failure under CI=true.
import { S3Client } from '@aws-sdk/client-s3';
import { Storage } from '@google-cloud/storage';
import type { IdempotencyStore, StoreOptions } from '@idem/core';
import { createTieredStore, type TieredStoreOptions } from '@idem/core/tiered';
import { createGcsStore } from '@idem/gcs';
import { newStorage } from '@idem/gcs/url';
import { createPostgresStore } from '@idem/postgres';
import { createS3Store } from '@idem/s3';
import { findServer } from '@idem/test-fixtures';
import { createValkeyStore } from '@idem/valkey';

export const redis = await findServer({ label: 'tiered store: Valkey front', env: ['IDEM_TEST_REDIS_URL'] });
export const minio = await findServer({
  label: 'tiered store: MinIO archive',
  env: ['IDEM_TEST_S3_ENDPOINT', 'IDEM_TEST_S3_ACCESS_KEY', 'IDEM_TEST_S3_SECRET_KEY', 'IDEM_TEST_S3_BUCKET', 'IDEM_TEST_S3_REGION'],
});
export const gcs = await findServer({ label: 'tiered store: fake-gcs-server archive', env: ['STORAGE_EMULATOR_HOST', 'IDEM_TEST_GCS_BUCKET'] });
export const postgres = await findServer({ label: 'tiered store: PostgreSQL archive', env: ['IDEM_TEST_POSTGRES_URL'] });

export type ArchiveKind = 's3' | 'gcs' | 'postgres';
/** Whether the servers of a front and that archive are there. */
export const tieredServers = (kind: ArchiveKind) => redis !== undefined && { s3: minio, gcs, postgres }[kind] !== undefined;
export const archiveLabel = (kind: ArchiveKind) => ({ s3: 'MinIO', gcs: 'fake-gcs-server', postgres: 'PostgreSQL' })[kind];

export const unique = (label: string) => `${label}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/** What a worker process needs to open the same tiered store: JSON only (a type, so that it is a JsonValue). */
export type TieredSpec = {
  redisUrl: string;
  valkeyPrefix: string;
  archive:
    | { kind: 's3'; env: Record<string, string>; prefix: string }
    | { kind: 'gcs'; endpoint: string; bucket: string; prefix: string }
    | { kind: 'postgres'; url: string; table: string };
  frontRetentionMs?: number;
};

export const s3Client = (env: Record<string, string>, endpoint = env.IDEM_TEST_S3_ENDPOINT) =>
  new S3Client({
    endpoint,
    region: env.IDEM_TEST_S3_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.IDEM_TEST_S3_ACCESS_KEY!, secretAccessKey: env.IDEM_TEST_S3_SECRET_KEY! },
  });

export function freshSpec(kind: ArchiveKind, frontRetentionMs?: number): TieredSpec {
  const archive: TieredSpec['archive'] =
    kind === 's3'
      ? { kind, env: minio!, prefix: `tiered/${unique('s3')}/` }
      : kind === 'gcs'
        ? { kind, endpoint: gcs!.STORAGE_EMULATOR_HOST!, bucket: gcs!.IDEM_TEST_GCS_BUCKET!, prefix: `tiered/${unique('gcs')}/` }
        : { kind, url: postgres!.IDEM_TEST_POSTGRES_URL!, table: unique('tiered').replaceAll('-', '_') };
  return {
    redisUrl: redis!.IDEM_TEST_REDIS_URL!,
    valkeyPrefix: `idem-test:${unique('tiered')}:`,
    archive,
    ...(frontRetentionMs !== undefined ? { frontRetentionMs } : {}),
  };
}

export async function openArchive(spec: TieredSpec, extra: { requestTimeoutMs?: number; endpoint?: string } = {}): Promise<IdempotencyStore> {
  const a = spec.archive;
  if (a.kind === 's3') {
    return createS3Store({
      client: s3Client(a.env, extra.endpoint),
      bucket: a.env.IDEM_TEST_S3_BUCKET!,
      prefix: a.prefix,
      ...(extra.requestTimeoutMs ? { requestTimeoutMs: extra.requestTimeoutMs } : {}),
    });
  }
  if (a.kind === 'postgres') return createPostgresStore({ url: a.url, table: a.table, createSchema: true });
  const storage = newStorage(Storage, { apiEndpoint: a.endpoint, projectId: 'idem-test' });
  return createGcsStore({ bucket: storage.bucket(a.bucket), prefix: a.prefix });
}

export async function openTiered(spec: TieredSpec, options: StoreOptions & Partial<TieredStoreOptions> = {}): Promise<IdempotencyStore> {
  const front = await createValkeyStore({ url: spec.redisUrl, prefix: spec.valkeyPrefix });
  const archive = options.archive ?? (await openArchive(spec));
  return createTieredStore({ front, archive, ...(spec.frontRetentionMs !== undefined ? { frontRetentionMs: spec.frontRetentionMs } : {}), ...options });
}
