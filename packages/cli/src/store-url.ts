// Store URLs: parsed and validated without any I/O, then opened by loading
// the one adapter the scheme needs. Adapters (and their SDKs) are imported
// lazily, so an LMDB run never loads the AWS or GCS SDKs.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { InvalidStoreUrlError, type IdempotencyStore, type StoreOptions } from '@idem/core';
import { CliError } from './errors.js';

export const DEFAULT_STORE = 'lmdb:.idem';

export interface StoreSpec {
  /** The URL as printed: absolute path for LMDB, password redacted. */
  display: string;
  kind: 'lmdb' | 'valkey' | 's3' | 'gcs';
  /** For read-only commands: false when the store certainly holds nothing (an LMDB directory that does not exist). */
  mayExist(): boolean;
  open(options: StoreOptions): Promise<IdempotencyStore>;
}

const bad = (url: string, why: string) => new InvalidStoreUrlError(`store URL ${JSON.stringify(redact(url))}: ${why}`);

/** Hides a password in a URL we echo back. */
function redact(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*:)[^/@]*@/i, '$1***@');
}

function queryOf(url: string, text: string, allowed: readonly string[]): URLSearchParams {
  const params = new URLSearchParams(text);
  for (const name of new Set(params.keys())) {
    if (!allowed.includes(name)) {
      throw bad(url, `unknown parameter ${JSON.stringify(name)}${allowed.length ? ` (known: ${allowed.join(', ')})` : ''}`);
    }
    if (params.getAll(name).length > 1) throw bad(url, `parameter ${JSON.stringify(name)} given twice`);
  }
  return params;
}

function flag(url: string, params: URLSearchParams, name: string): boolean | undefined {
  const v = params.get(name);
  if (v === null) return undefined;
  if (['1', 'true', 'yes'].includes(v)) return true;
  if (['0', 'false', 'no'].includes(v)) return false;
  throw bad(url, `${name} must be true or false, got ${JSON.stringify(v)}`);
}

/** Parses a store URL; throws INVALID_STORE_URL before any I/O. `cwd` resolves relative LMDB paths. */
export function parseStoreUrl(text: string, cwd = process.cwd()): StoreSpec {
  if (typeof text !== 'string' || text.trim() === '') throw new InvalidStoreUrlError('store URL must not be empty');
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text)?.[1]?.toLowerCase();
  switch (scheme) {
    case 'lmdb':
      return parseLmdb(text, cwd);
    case 'redis':
    case 'rediss':
    case 'valkey':
    case 'valkeys':
      return parseValkey(text, scheme);
    case 's3':
      return parseS3(text);
    case 'gs':
      return parseGcs(text);
    case undefined:
      throw bad(text, `no scheme; for a directory write lmdb:${text} (schemes: lmdb, redis, rediss, valkey, valkeys, s3, gs)`);
    default:
      throw bad(text, `unknown scheme ${JSON.stringify(scheme)} (schemes: lmdb, redis, rediss, valkey, valkeys, s3, gs)`);
  }
}

// lmdb:///abs/path, lmdb:/abs/path or lmdb:relative/path (to the working directory).
function parseLmdb(url: string, cwd: string): StoreSpec {
  const [rest = '', query = ''] = url.slice('lmdb:'.length).split(/\?(.*)/s, 2);
  let raw = rest;
  if (raw.startsWith('//')) {
    if (!raw.startsWith('///')) throw bad(url, 'an LMDB store is local: write lmdb:///absolute/path or lmdb:relative/path (no host)');
    raw = raw.slice(2);
  }
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch (cause) {
    throw new InvalidStoreUrlError(`store URL ${JSON.stringify(url)}: bad percent-encoding in the path`, cause);
  }
  if (path === '' || path.includes('\0')) throw bad(url, 'the LMDB path is empty');
  const params = queryOf(url, query, ['durability']);
  const durability = params.get('durability');
  if (durability !== null && durability !== 'flush' && durability !== 'commit') {
    throw bad(url, `durability must be flush or commit, got ${JSON.stringify(durability)}`);
  }
  const abs = resolve(cwd, path);
  return {
    kind: 'lmdb',
    display: `lmdb://${abs}${durability ? `?durability=${durability}` : ''}`,
    mayExist: () => existsSync(abs),
    async open(options) {
      const { createLmdbStore } = await load<typeof import('@idem/lmdb')>('@idem/lmdb', 'lmdb:');
      return createLmdbStore({ path: abs, ...(durability ? { durability } : {}), ...options });
    },
  };
}

// redis://[user:password@]host[:port][/db][?prefix=P&cluster=true]; rediss:// and valkeys:// use TLS.
// Cluster: cluster=true, the URL's host is one seed node; more seeds with nodes=host:port,host:port.
function parseValkey(url: string, scheme: string): StoreSpec {
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw new InvalidStoreUrlError(`store URL ${JSON.stringify(redact(url))} is not a valid URL`, cause);
  }
  if (u.hostname === '') throw bad(url, 'a host is required, e.g. redis://127.0.0.1:6379');
  const db = u.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,5}$/.test(db)) throw bad(url, `the path must be a database number, got ${JSON.stringify(db)}`);
  const params = queryOf(url, u.search.slice(1), ['prefix', 'cluster', 'nodes']);
  const cluster = flag(url, params, 'cluster') ?? false;
  if (cluster && db !== '' && db !== '0') throw bad(url, 'a cluster has only database 0');
  const nodes = (params.get('nodes') ?? '')
    .split(',')
    .filter(Boolean)
    .map((node) => {
      const m = /^([^:\s]+):(\d{1,5})$/.exec(node);
      if (!m || Number(m[2]) > 65535) throw bad(url, `nodes must be host:port,host:port, got ${JSON.stringify(node)}`);
      return { host: m[1]!, port: Number(m[2]) };
    });
  if (nodes.length > 0 && !cluster) throw bad(url, 'nodes= needs cluster=true');
  const prefix = params.get('prefix') ?? undefined;
  if (prefix === '') throw bad(url, 'prefix must not be empty');
  // @idem/valkey opens (and closes) its own client from a URL or a list of cluster seeds.
  const base = new URL(u.href);
  base.search = '';
  const target = cluster ? { cluster: [base.href, ...nodes.map((n) => `${n.host}:${n.port}`)] } : { url: base.href };
  return {
    kind: 'valkey',
    display: redact(url),
    mayExist: () => true,
    async open(options) {
      const { createValkeyStore } = await load<ValkeyModule>('@idem/valkey', `${scheme}:`);
      return createValkeyStore({ ...target, ...(prefix !== undefined ? { prefix } : {}), ...options });
    },
  };
}

// S3: 3..63 of [a-z0-9.-]; GCS also allows underscores and, with dots, up to 222.
const BUCKET = { s3: /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, gs: /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/ };

function bucketAndPrefix(url: string, scheme: 's3' | 'gs'): { bucket: string; prefix: string | undefined; query: string } {
  const m = /^[a-z0-9]+:\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?$/i.exec(url);
  if (!m) throw bad(url, `write ${scheme}://bucket/prefix`);
  const [, bucket = '', path = '', query = ''] = m;
  if (bucket.includes('@')) throw bad(url, 'credentials do not belong in the URL; use the SDK\'s usual environment or config');
  if (!BUCKET[scheme].test(bucket) || bucket.includes('..')) {
    throw bad(url, `${JSON.stringify(bucket)} is not a valid bucket name (lower-case letters, digits, dots, hyphens)`);
  }
  let prefix: string | undefined;
  try {
    prefix = decodeURIComponent(path.replace(/^\//, ''));
  } catch (cause) {
    throw new InvalidStoreUrlError(`store URL ${JSON.stringify(url)}: bad percent-encoding in the prefix`, cause);
  }
  // The prefix names a folder: "jobs" and "jobs/" mean the same; no path means the adapter's default.
  if (prefix === '') prefix = undefined;
  else if (!prefix.endsWith('/')) prefix += '/';
  if (prefix !== undefined && (Buffer.byteLength(prefix) > 900 || /[\r\n]/.test(prefix))) throw bad(url, 'the prefix must be at most 900 bytes, on one line');
  return { bucket, prefix, query };
}

// s3://bucket/prefix?endpoint=URL&region=R&path_style=true&probe=false&unconditional_sweep=true. Credentials, region and
// endpoint otherwise come from the SDK's usual chain (AWS_* variables, ~/.aws).
function parseS3(url: string): StoreSpec {
  const { bucket, prefix, query } = bucketAndPrefix(url, 's3');
  const params = queryOf(url, query, ['endpoint', 'region', 'path_style', 'probe', 'unconditional_sweep']);
  const endpoint = params.get('endpoint') ?? undefined;
  if (endpoint !== undefined) {
    let ok = false;
    try {
      ok = ['http:', 'https:'].includes(new URL(endpoint).protocol);
    } catch (cause) {
      throw new InvalidStoreUrlError(`store URL ${JSON.stringify(url)}: endpoint is not a URL`, cause);
    }
    if (!ok) throw bad(url, 'endpoint must be an http(s) URL');
  }
  const region = params.get('region') ?? undefined;
  if (region !== undefined && !/^[a-z0-9-]{1,64}$/.test(region)) throw bad(url, `region ${JSON.stringify(region)} is not valid`);
  const pathStyle = flag(url, params, 'path_style');
  const probe = flag(url, params, 'probe');
  const unconditionalSweep = flag(url, params, 'unconditional_sweep');
  return {
    kind: 's3',
    display: url,
    mayExist: () => true,
    async open(options) {
      const { createS3Store } = await load<S3Module>('@idem/s3', 's3:');
      const { S3Client } = await load<AwsS3Module>('@aws-sdk/client-s3', 's3:');
      const customEndpoint = endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
      const client = new S3Client({
        ...(endpoint ? { endpoint } : {}),
        // Custom endpoints (MinIO, Ceph, ...) mostly serve path-style only.
        ...((pathStyle ?? customEndpoint !== undefined) ? { forcePathStyle: true } : {}),
        ...(region ? { region } : customEndpoint && !process.env.AWS_REGION && !process.env.AWS_DEFAULT_REGION ? { region: 'us-east-1' } : {}),
      });
      try {
        const store = await createS3Store({
          client,
          bucket,
          ...(prefix !== undefined ? { prefix } : {}),
          ...(probe !== undefined ? { probe } : {}),
          ...(unconditionalSweep !== undefined ? { unconditionalSweep } : {}),
          ...options,
        });
        return ownClient(store, () => client.destroy());
      } catch (error) {
        client.destroy();
        throw error;
      }
    },
  };
}

// gs://bucket/prefix; the SDK finds credentials and honours STORAGE_EMULATOR_HOST itself.
function parseGcs(url: string): StoreSpec {
  const { bucket, prefix, query } = bucketAndPrefix(url, 'gs');
  queryOf(url, query, []);
  return {
    kind: 'gcs',
    display: url,
    mayExist: () => true,
    async open(options) {
      const { createGcsStore } = await load<GcsModule>('@idem/gcs', 'gs:');
      const { Storage } = await load<GcsSdkModule>('@google-cloud/storage', 'gs:');
      return createGcsStore({ storage: newStorage(Storage), bucket, ...(prefix !== undefined ? { prefix } : {}), ...options });
    },
  };
}

/**
 * The SDK takes STORAGE_EMULATOR_HOST verbatim as its JSON-API base URL
 * (googleapis/nodejs-storage#1314), while emulators serve it under
 * /storage/v1; so the variable's host goes in as apiEndpoint instead. It is
 * hidden from the constructor only: the wrapped command still inherits it.
 */
function newStorage(Storage: GcsSdkModule['Storage']): unknown {
  const emulator = process.env.STORAGE_EMULATOR_HOST;
  if (!emulator) return new Storage();
  delete process.env.STORAGE_EMULATOR_HOST;
  try {
    const apiEndpoint = (/^https?:\/\//.test(emulator) ? emulator : `http://${emulator}`).replace(/\/+(storage\/v1\/?)?$/, '');
    return new Storage({ apiEndpoint, projectId: process.env.GOOGLE_CLOUD_PROJECT || 'idem' });
  } finally {
    process.env.STORAGE_EMULATOR_HOST = emulator;
  }
}

/** Closing the store also closes the client the CLI created for it. */
function ownClient(store: IdempotencyStore, closeClient: () => unknown): IdempotencyStore {
  const close = store.close.bind(store);
  store.close = async () => {
    try {
      await close();
    } finally {
      await closeClient();
    }
  };
  return store;
}

// Minimal shapes of the optional packages: typed here so that the CLI builds without them.
type AnyOptions = StoreOptions & Record<string, unknown>;
interface ValkeyModule {
  createValkeyStore(options: AnyOptions): Promise<IdempotencyStore>;
}
interface S3Module {
  createS3Store(options: AnyOptions): Promise<IdempotencyStore>;
}
interface AwsS3Module {
  S3Client: new (config: Record<string, unknown>) => { destroy(): void };
}
interface GcsModule {
  createGcsStore(options: AnyOptions): Promise<IdempotencyStore>;
}
interface GcsSdkModule {
  Storage: new (options?: Record<string, unknown>) => unknown;
}

const INSTALL: Record<string, string> = {
  'lmdb:': '@idem/lmdb',
  'redis:': '@idem/valkey',
  'rediss:': '@idem/valkey',
  'valkey:': '@idem/valkey',
  'valkeys:': '@idem/valkey',
  's3:': '@idem/s3 @aws-sdk/client-s3',
  'gs:': '@idem/gcs @google-cloud/storage',
};

/** import() of an optional package; a missing one is ADAPTER_MISSING naming what to install. */
async function load<T>(specifier: string, scheme: string): Promise<T> {
  try {
    return (await import(specifier)) as T;
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (code === 'ERR_MODULE_NOT_FOUND') {
      const missing = /Cannot find (?:package|module) '([^']+)'/.exec((error as Error).message)?.[1] ?? specifier;
      throw new CliError(
        'ADAPTER_MISSING',
        `${scheme}// stores need ${INSTALL[scheme] ?? specifier}, and ${JSON.stringify(missing)} is not installed: npm install ${INSTALL[scheme] ?? specifier}`,
        { cause: error },
      );
    }
    throw error;
  }
}
