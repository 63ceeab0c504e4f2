// Every backend the test environment provides, as store URLs (one story runs over each; a worker
// process opens the same store from the same URL): LMDB always, Valkey, MinIO, fake-gcs-server and
// PostgreSQL from scripts/servers.sh's variables. A missing server is a loud skip, and a failure under CI=true.
import type { IdempotencyStore, StoreOptions } from '@idem/core';
import { openStoreUrl } from '@idem/core/url';
import { findServer, tempDir } from '@idem/test-fixtures';

const redis = await findServer({ label: '@idem/http on Valkey', env: ['IDEM_TEST_REDIS_URL'] });
const s3 = await findServer({
  label: '@idem/http on S3 (MinIO)',
  env: ['IDEM_TEST_S3_ENDPOINT', 'IDEM_TEST_S3_ACCESS_KEY', 'IDEM_TEST_S3_SECRET_KEY', 'IDEM_TEST_S3_BUCKET', 'IDEM_TEST_S3_REGION'],
});
const gcs = await findServer({ label: '@idem/http on GCS (fake-gcs-server)', env: ['STORAGE_EMULATOR_HOST', 'IDEM_TEST_GCS_BUCKET'] });
const postgres = await findServer({ label: '@idem/http on PostgreSQL', env: ['IDEM_TEST_POSTGRES_URL'] });

export const unique = (label: string) => `${label}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/** The environment a store URL needs (S3 credentials), for this process and for workers. */
export const storeEnv: Record<string, string> = s3
  ? { AWS_ACCESS_KEY_ID: s3.IDEM_TEST_S3_ACCESS_KEY!, AWS_SECRET_ACCESS_KEY: s3.IDEM_TEST_S3_SECRET_KEY! }
  : {};
Object.assign(process.env, storeEnv);

export interface Backend {
  name: string;
  /** A fresh store's URL (its own directory, prefix or key space). */
  url: () => string;
}

export const BACKENDS: Backend[] = [
  { name: 'lmdb', url: () => `lmdb://${tempDir('idem-http-')}` },
  ...(redis ? [{ name: 'valkey', url: () => `${redis.IDEM_TEST_REDIS_URL}?prefix=${unique('http')}:` }] : []),
  ...(s3
    ? [
        {
          name: 's3',
          url: () =>
            `s3://${s3.IDEM_TEST_S3_BUCKET}/${unique('http')}?endpoint=${encodeURIComponent(s3.IDEM_TEST_S3_ENDPOINT!)}&region=${s3.IDEM_TEST_S3_REGION}`,
        },
      ]
    : []),
  ...(gcs ? [{ name: 'gcs', url: () => `gs://${gcs.IDEM_TEST_GCS_BUCKET}/${unique('http')}` }] : []),
  // A table of its own per store, created at open.
  ...(postgres ? [{ name: 'postgres', url: () => `${postgres.IDEM_TEST_POSTGRES_URL}?table=${unique('http').replaceAll('-', '_')}&create_schema=true` }] : []),
];

export const openStore = (url: string, options: StoreOptions = {}): Promise<IdempotencyStore> => openStoreUrl(url, { ...options, importer: (s) => import(s) });
