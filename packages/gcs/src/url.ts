// gs: store URLs (`@idem/gcs/url`), the handler @idem/core/url dispatches to.
// Light: parsing loads neither this adapter nor @google-cloud/storage; `open` does.
//   gs://bucket/prefix (no parameters). Credentials come from the SDK's
//   usual chain (GOOGLE_APPLICATION_CREDENTIALS, metadata server);
//   STORAGE_EMULATOR_HOST points it at an emulator (see newStorage).
import type { IdempotencyStore, StoreOptions } from '@idem/core';
import { loadOptional, quoteUrlPart, redactStoreUrl, storeUrlBucket, storeUrlError, storeUrlQuery } from '@idem/core/url';

/** Bucket names: 3..222 of lower-case letters, digits, dots, hyphens, underscores; no "..". */
const BUCKET = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;

export interface GcsUrlConfig {
  bucket: string;
  prefix?: string;
}

export const schemes = ['gs'] as const;

export function parse(url: string): GcsUrlConfig {
  const { bucket, prefix, query } = storeUrlBucket(url);
  if (!BUCKET.test(bucket) || bucket.includes('..')) {
    throw storeUrlError(url, `${quoteUrlPart(bucket, 63)} is not a bucket name (lower-case letters, digits, dots, hyphens, underscores)`);
  }
  // The adapter's rule: object names are at most 1024 bytes, 64 of them the digest.
  if (prefix !== undefined && (Buffer.byteLength(prefix) > 900 || /[\r\n]/.test(prefix))) {
    throw storeUrlError(url, 'the prefix must be at most 900 bytes, on one line');
  }
  storeUrlQuery(url, query, []);
  return { bucket, ...(prefix !== undefined ? { prefix } : {}) };
}

/** No userinfo, no secret parameter: core's conservative rule. */
export function redact(url: string): string {
  return redactStoreUrl(url);
}

export async function open(config: GcsUrlConfig, options: StoreOptions = {}): Promise<IdempotencyStore> {
  const { Storage } = await loadOptional('gs', '@google-cloud/storage', () => import('@google-cloud/storage'));
  const { createGcsStore } = await import('./index.js');
  return createGcsStore({ ...options, storage: newStorage(Storage), bucket: config.bucket, ...(config.prefix !== undefined ? { prefix: config.prefix } : {}) });
}

/**
 * `new Storage(options)` that works with an emulator. The SDK takes
 * STORAGE_EMULATOR_HOST verbatim as its JSON-API base URL
 * (googleapis/nodejs-storage#1314), while emulators such as fake-gcs-server
 * serve that API under /storage/v1; so the variable's URL goes in as
 * `apiEndpoint` (unless you give one) and the variable is hidden from the
 * constructor only: child processes still inherit it.
 */
// biome-ignore lint/suspicious/noExplicitAny: any so that the SDK's own options type is assignable
export function newStorage<S>(Storage: new (options?: Record<string, any>) => S, options: Record<string, unknown> = {}): S {
  const emulator = process.env.STORAGE_EMULATOR_HOST;
  if (!emulator) return new Storage(options);
  delete process.env.STORAGE_EMULATOR_HOST;
  try {
    const apiEndpoint = (/^https?:\/\//.test(emulator) ? emulator : `http://${emulator}`).replace(/\/+(storage\/v1\/?)?$/, '');
    return new Storage({ apiEndpoint, projectId: process.env.GOOGLE_CLOUD_PROJECT || 'idem', ...options });
  } finally {
    process.env.STORAGE_EMULATOR_HOST = emulator;
  }
}
