// s3: store URLs (`@idem/s3/url`), the handler @idem/core/url dispatches to.
// Light: parsing loads neither this adapter nor the AWS SDK; `open` does.
//   s3://bucket/prefix?endpoint=URL&region=R&path_style=true&probe=false&unconditional_sweep=true
// Credentials never go in the URL: the SDK's usual chain (AWS_* variables,
// ~/.aws, instance roles) provides them, and region/endpoint too by default.
import type { IdempotencyStore, StoreOptions } from '@idem/core';
import { loadOptional, quoteUrlPart, redactStoreUrl, storeUrlBucket, storeUrlError, storeUrlFlag, storeUrlQuery } from '@idem/core/url';

/** S3 bucket names: 3..63 of lower-case letters, digits, dots and hyphens (the adapter's rule). */
export const S3_BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
/** The limit on `prefix`, in UTF-8 bytes (S3 keys have at most 1024; the record name adds 64). It may not start with "/". */
export const S3_MAX_PREFIX_LENGTH = 512;

/**
 * Why `bucket` is not an S3 bucket name, or undefined. One rule for the URL and
 * the adapter: 3 to 63 lower-case letters, digits, dots and hyphens, starting and
 * ending with a letter or digit, no two dots (or a dot and a hyphen) side by side,
 * not an IPv4 address.
 */
export function s3BucketProblem(bucket: unknown): string | undefined {
  const ok = typeof bucket === 'string' && S3_BUCKET_NAME.test(bucket) && !/\.\.|\.-|-\./.test(bucket) && !/^\d+\.\d+\.\d+\.\d+$/.test(bucket);
  return ok ? undefined : 'is not an S3 bucket name (3 to 63 lower-case letters, digits, dots, hyphens; no ".." or an IP address)';
}

/** Why `prefix` cannot be a key prefix, or undefined: the one check of the URL and the adapter, before any request. */
export function s3PrefixProblem(prefix: unknown): string | undefined {
  if (typeof prefix !== 'string') return 'must be a string';
  if (Buffer.byteLength(prefix) > S3_MAX_PREFIX_LENGTH || prefix.startsWith('/'))
    return `must be at most ${S3_MAX_PREFIX_LENGTH} bytes (UTF-8), not starting with "/"`;
  // A control character in a key is legal to S3 but breaks listings, XML responses and logs.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(prefix)) return 'must not contain control characters (newline, tab, NUL...)';
  return undefined;
}

export interface S3UrlConfig {
  bucket: string;
  prefix?: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  /** `probe=false`: skip the open-time check of the server's conditional writes. */
  probe?: boolean;
  /** `unconditional_sweep=true`: let sweep run where DELETE ignores If-Match. */
  unconditionalSweep?: boolean;
}

export const schemes = ['s3'] as const;

export function parse(url: string): S3UrlConfig {
  const { bucket, prefix, query } = storeUrlBucket(url);
  const badBucket = s3BucketProblem(bucket);
  if (badBucket !== undefined) throw storeUrlError(url, `${quoteUrlPart(bucket, 63)} ${badBucket}`);
  const badPrefix = prefix === undefined ? undefined : s3PrefixProblem(prefix);
  if (badPrefix !== undefined) throw storeUrlError(url, `the prefix ${badPrefix}`);
  const params = storeUrlQuery(url, query, ['endpoint', 'region', 'path_style', 'probe', 'unconditional_sweep']);
  const endpoint = params.get('endpoint') ?? undefined;
  if (endpoint !== undefined) {
    let e: URL;
    try {
      e = new URL(endpoint);
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
      throw storeUrlError(url, 'endpoint is not a URL (percent-encode it)'); // the TypeError quotes it: not kept
    }
    if (e.protocol !== 'http:' && e.protocol !== 'https:') throw storeUrlError(url, 'endpoint must be an http(s) URL');
    if (e.username !== '' || e.password !== '')
      throw storeUrlError(url, 'endpoint must not hold credentials; the AWS SDK credential chain (environment, profile, role) provides them');
  }
  const region = params.get('region') ?? undefined;
  if (region !== undefined && !/^[a-z0-9-]{1,64}$/.test(region)) throw storeUrlError(url, `region ${quoteUrlPart(region, 64)} is not valid`);
  const pathStyle = storeUrlFlag(url, params, 'path_style');
  const probe = storeUrlFlag(url, params, 'probe');
  const unconditionalSweep = storeUrlFlag(url, params, 'unconditional_sweep');
  return {
    bucket,
    ...(prefix !== undefined ? { prefix } : {}),
    ...(endpoint !== undefined ? { endpoint } : {}),
    ...(region !== undefined ? { region } : {}),
    ...(pathStyle !== undefined ? { pathStyle } : {}),
    ...(probe !== undefined ? { probe } : {}),
    ...(unconditionalSweep !== undefined ? { unconditionalSweep } : {}),
  };
}

/** No userinfo, no secret parameter: core's conservative rule. */
export function redact(url: string): string {
  return redactStoreUrl(url);
}

/** Opens the store with an S3Client of its own, closed by `store.close()`. */
export async function open(config: S3UrlConfig, options: StoreOptions = {}): Promise<IdempotencyStore> {
  const { S3Client } = await loadOptional('s3', '@aws-sdk/client-s3', () => import('@aws-sdk/client-s3'));
  const { createS3Store } = await import('./index.js');
  const { endpoint, region, pathStyle, bucket, prefix, probe, unconditionalSweep } = config;
  const customEndpoint = endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  const client = new S3Client({
    ...(endpoint ? { endpoint } : {}),
    // Custom endpoints (MinIO, Ceph, ...) mostly serve path-style only.
    ...((pathStyle ?? customEndpoint !== undefined) ? { forcePathStyle: true } : {}),
    ...(region ? { region } : customEndpoint && !process.env.AWS_REGION && !process.env.AWS_DEFAULT_REGION ? { region: 'us-east-1' } : {}),
  });
  try {
    const store = await createS3Store({
      ...options,
      client,
      bucket,
      ...(prefix !== undefined ? { prefix } : {}),
      ...(probe !== undefined ? { probe } : {}),
      ...(unconditionalSweep !== undefined ? { unconditionalSweep } : {}),
    });
    const close = store.close.bind(store);
    store.close = async () => {
      try {
        await close();
      } finally {
        client.destroy();
      }
    };
    return store;
  } catch (error) {
    client.destroy();
    throw error;
  }
}
