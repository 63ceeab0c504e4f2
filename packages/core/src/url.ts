// Store URLs (`@idem/core/url`): the light entry that opens a store from a
// string such as "redis://host:6379" with only the one adapter installed.
// Each adapter owns its grammar in its own `@idem/<pkg>/url` module (a
// StoreUrlHandler); this file dispatches on the scheme, loads that module
// lazily, and makes sure nothing secret from the URL is ever echoed.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AdapterMissingError, InvalidStoreUrlError } from './errors.js';
import { quoteUrlPart, SCHEME, scrubError, storeUrlError } from './redact.js';
import type { IdempotencyStore, StoreOptions } from './store.js';
import { parseTieredUrl, splitArchive } from './url-tiered.js';

export { AdapterMissingError };
// Redaction lives in redact.ts; handlers import it from here, `@idem/core/url`.
export { quoteUrlPart, redactStoreUrl, scrubUrlSecrets, storeUrlError } from './redact.js';

/** What a handler's `parse` is told besides the URL. */
export interface StoreUrlContext {
  /** The URL's scheme, lower case, without ":" (e.g. "rediss"). */
  readonly scheme: string;
  /** Directory that relative paths (LMDB) resolve against. */
  readonly cwd: string;
}

/**
 * What an adapter's `@idem/<pkg>/url` module exports (the module namespace
 * itself is the handler). `parse` and `redact` do no I/O and import nothing
 * heavy; `open` imports the adapter and its SDK.
 */
export interface StoreUrlHandler<C = unknown> {
  /** Schemes served, lower case, without ":". */
  readonly schemes: readonly string[];
  /** Validates the URL into the adapter's settings; throws InvalidStoreUrlError (see `storeUrlError`). */
  parse(url: string, context: StoreUrlContext): C;
  /** The URL as it may be printed: no userinfo, no secret parameter. Called only on a URL that parsed. */
  redact(url: string, context: StoreUrlContext): string;
  /** Opens the store the settings describe. */
  open(config: C, options: StoreOptions): Promise<IdempotencyStore>;
  /** For read-only tools: false when the store certainly holds nothing yet. Default: true. */
  mayExist?(config: C): boolean;
}

/** A parsed URL, ready to open. Holds no secret in any enumerable field. */
export interface ParsedStoreUrl {
  readonly scheme: string;
  /** The package whose handler parsed it, e.g. "@idem/valkey". */
  readonly package: string;
  /** Safe to print or log (password and secret parameters removed; LMDB paths absolute). */
  readonly display: string;
  mayExist(): boolean;
  /**
   * `readOnly: true` is a hint for monitoring: a store with a read-only mode (LMDB) opens in it
   * (nothing created, no write lock, a read-only filesystem is fine); others ignore it.
   */
  open(options?: StoreOptions & { readOnly?: boolean }): Promise<IdempotencyStore>;
}

export interface StoreUrlOptions {
  /** Relative LMDB paths resolve against it. Default: process.cwd(). */
  cwd?: string;
  /**
   * Imports `@idem/<pkg>/url` from your module, e.g. `(s) => import(s)`, for
   * layouts where @idem/core cannot see your packages (a pnpm workspace).
   * Tried first; core's own import() is the fallback.
   */
  importer?: (specifier: string) => Promise<unknown>;
}

/** A loader registered for a scheme: returns the handler (or a module exporting one). */
export type StoreSchemeLoader = () => StoreUrlHandler | Promise<StoreUrlHandler>;

/** Built-in schemes and their packages; `install` also names the SDK the adapter needs. */
const BUILT_IN: Record<string, { pkg: string; install: string }> = {
  lmdb: { pkg: '@idem/lmdb', install: '@idem/lmdb' },
  redis: { pkg: '@idem/valkey', install: '@idem/valkey ioredis' },
  rediss: { pkg: '@idem/valkey', install: '@idem/valkey ioredis' },
  valkey: { pkg: '@idem/valkey', install: '@idem/valkey ioredis' },
  valkeys: { pkg: '@idem/valkey', install: '@idem/valkey ioredis' },
  'redis+sentinel': { pkg: '@idem/valkey', install: '@idem/valkey ioredis' },
  'valkey+sentinel': { pkg: '@idem/valkey', install: '@idem/valkey ioredis' },
  s3: { pkg: '@idem/s3', install: '@idem/s3 @aws-sdk/client-s3' },
  gs: { pkg: '@idem/gcs', install: '@idem/gcs @google-cloud/storage' },
  postgres: { pkg: '@idem/postgres', install: '@idem/postgres' },
  postgresql: { pkg: '@idem/postgres', install: '@idem/postgres' },
};

const registry = new Map<string, StoreSchemeLoader>();

/**
 * Serves `scheme` with your own handler (before any built-in or convention).
 * E.g. `registerStoreScheme('memory', () => import('./memory-url.js'))`.
 */
export function registerStoreScheme(scheme: string, loader: StoreSchemeLoader): void {
  if (typeof scheme !== 'string' || !/^[a-z][a-z0-9+.-]*$/.test(scheme)) {
    throw new InvalidStoreUrlError(`scheme must be lower case letters, digits, "+", "." or "-", starting with a letter; got ${JSON.stringify(String(scheme))}`);
  }
  if (typeof loader !== 'function') throw new InvalidStoreUrlError('loader must be a function returning a store URL handler');
  registry.set(scheme, loader);
}

/**
 * The package that serves a scheme: the built-in table, else the convention
 * `x:` and `x+y:` → `@idem/x` (its handler at `@idem/x/url`).
 */
export function storeUrlPackage(scheme: string): string {
  const s = scheme.toLowerCase();
  return BUILT_IN[s]?.pkg ?? `@idem/${s.split('+')[0]}`;
}

/**
 * Parses a store URL without I/O (the adapter's light `/url` module is
 * imported, nothing else). Throws INVALID_STORE_URL, or ADAPTER_MISSING when
 * the scheme is built in and its package is not installed. No error holds
 * anything from the URL's userinfo or secret parameters.
 */
export async function parseStoreUrl(url: string, options: StoreUrlOptions = {}): Promise<ParsedStoreUrl> {
  if (typeof url !== 'string' || url.trim() === '') throw new InvalidStoreUrlError('store URL must not be empty');
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    const hint = url.includes('@') || url.includes(':') ? '' : `; for a directory write lmdb:${url}`;
    throw storeUrlError(url, `no scheme${hint} (built in: ${Object.keys(BUILT_IN).join(', ')})`);
  }
  const tier = splitArchive(url);
  if (tier !== undefined) return parseTieredUrl(url, tier, options, parseStoreUrl);
  const handler = await loadHandler(url, scheme, options.importer);
  const context: StoreUrlContext = { scheme, cwd: options.cwd ?? process.cwd() };
  let config: unknown;
  let display: string;
  try {
    config = handler.parse(url, context);
    display = handler.redact(url, context);
  } catch (error) {
    throw scrubError(error, url);
  }
  const pkg = storeUrlPackage(scheme);
  return Object.freeze({
    scheme,
    package: pkg,
    display,
    mayExist: () => handler.mayExist?.(config) ?? true,
    async open(storeOptions: StoreOptions = {}) {
      try {
        return await handler.open(config, storeOptions);
      } catch (error) {
        throw scrubError(error, url);
      }
    },
  });
}

/** Parses and opens in one step: `await openStoreUrl('redis://127.0.0.1:6379', { leaseMs: 60_000 })`. */
export async function openStoreUrl(url: string, options: StoreOptions & StoreUrlOptions = {}): Promise<IdempotencyStore> {
  const { cwd, importer, ...storeOptions } = options;
  const parsed = await parseStoreUrl(url, { ...(cwd !== undefined ? { cwd } : {}), ...(importer ? { importer } : {}) });
  return parsed.open(storeOptions);
}

async function loadHandler(url: string, scheme: string, importer: StoreUrlOptions['importer']): Promise<StoreUrlHandler> {
  const registered = registry.get(scheme);
  let loaded: unknown;
  const builtIn = BUILT_IN[scheme];
  const pkg = storeUrlPackage(scheme);
  if (registered) {
    loaded = await registered();
  } else {
    const specifier = `${pkg}/url`;
    // From the caller's importer, then from core's own folder (flat installs), then from the
    // application's working directory (a pnpm workspace, where core cannot see the packages beside it).
    const attempts = [...(importer ? [importer] : []), (s: string) => import(s), (s: string) => importFromWorkingDirectory(pkg, s)];
    let missing: unknown;
    for (const attempt of attempts) {
      try {
        loaded = await attempt(specifier);
        break;
      } catch (error) {
        if (!isNotFound(error, pkg)) throw error;
        missing = error; // this resolver cannot see the package: try the next one
      }
    }
    if (loaded === undefined) {
      if (builtIn) throw new AdapterMissingError(scheme, builtIn.install, missing);
      // Scrubbed if the "scheme" was in fact a user name (user:password@host).
      throw storeUrlError(
        url,
        `unknown scheme ${JSON.stringify(scheme)} (built in: ${Object.keys(BUILT_IN).join(', ')}; ${scheme}: would be served by ${pkg}, which is not installed)`,
      );
    }
  }
  const handler = asHandler(loaded);
  if (!handler) throw storeUrlError(url, `${pkg}/url does not export a store URL handler (schemes, parse, redact, open)`);
  if (!handler.schemes.includes(scheme))
    throw storeUrlError(url, `${pkg}/url does not serve the scheme ${JSON.stringify(scheme)} (it serves ${handler.schemes.join(', ')})`);
  return handler;
}

/**
 * Finds `pkg` in a node_modules folder at or above the working directory (as
 * Node would for a script there; NODE_PATH is not consulted) and imports
 * `specifier` through the package's own exports (a self-reference).
 */
async function importFromWorkingDirectory(pkg: string, specifier: string): Promise<unknown> {
  for (let dir = process.cwd(); ; dir = dirname(dir)) {
    const manifest = join(dir, 'node_modules', pkg, 'package.json');
    if (existsSync(manifest)) return import(pathToFileURL(createRequire(manifest).resolve(specifier)).href);
    if (dirname(dir) === dir) break;
  }
  // Shaped like import()'s own error, so that the caller reports the package as missing.
  throw Object.assign(new Error(`Cannot find package '${pkg}' from the working directory`), { code: 'ERR_MODULE_NOT_FOUND' });
}

function asHandler(value: unknown): StoreUrlHandler | undefined {
  const h = value as Partial<StoreUrlHandler> | null | undefined;
  if (h && Array.isArray(h.schemes) && typeof h.parse === 'function' && typeof h.redact === 'function' && typeof h.open === 'function')
    return h as StoreUrlHandler;
  return undefined;
}

/** True when `error` says the package itself (not one of its own imports) could not be found. */
function isNotFound(error: unknown, pkg: string): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') return false;
  const message = error instanceof Error ? error.message : '';
  // "Cannot find package '@idem/x'", or an older @idem/x without the ./url export; a
  // module missing INSIDE the package names another specifier and is rethrown.
  return message.includes(`'${pkg}'`) || message.includes(`'${pkg}/url'`) || message.includes(`${pkg}/package.json`);
}

/**
 * Imports an optional package from an adapter's `open` (pass `() => import('x')`
 * from your own module so it resolves from there). A missing package becomes
 * ADAPTER_MISSING naming `install`.
 */
export async function loadOptional<T>(scheme: string, install: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === 'ERR_MODULE_NOT_FOUND') throw new AdapterMissingError(scheme, install, error);
    throw error;
  }
}

// ---------------------------------------------------------------------------
// Small helpers for handlers, so every adapter reads its query the same way.

/** The query's parameters; unknown or repeated names are INVALID_STORE_URL. */
export function storeUrlQuery(url: string, query: string, allowed: readonly string[]): URLSearchParams {
  const params = new URLSearchParams(query);
  for (const name of new Set(params.keys())) {
    if (!allowed.includes(name)) {
      throw storeUrlError(url, `unknown parameter ${quoteUrlPart(name, 40)}${allowed.length ? ` (known: ${allowed.join(', ')})` : ' (none are known)'}`);
    }
    if (params.getAll(name).length > 1) throw storeUrlError(url, `parameter ${name} given twice`);
  }
  return params;
}

/**
 * A server URL (`scheme://[user:password@]host[:port]/path?query`) read with WHATWG URL, with
 * the checks every server adapter makes: a valid URL with "//" and a host, well-formed
 * percent-encoding in the user name and password, no #fragment. `example` is the shape the
 * messages show, e.g. "redis://[user:password@]host[:port][/db]".
 */
export function parseServerUrl(url: string, example: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    // The TypeError quotes the URL whole (its `input`): not kept as the cause.
    throw storeUrlError(url, `not a valid URL; write ${example} (percent-encode "@", "/", ":" in a password)`);
  }
  if (!url.slice(u.protocol.length).startsWith('//')) throw storeUrlError(url, `write ${example} (with "//")`);
  if (u.hostname === '') throw storeUrlError(url, `a host is required: ${example}`);
  try {
    decodeURIComponent(u.username);
    decodeURIComponent(u.password);
  } catch (error) {
    if (!(error instanceof URIError)) throw error;
    throw storeUrlError(url, 'bad percent-encoding in the user name or password (write "%" as %25)');
  }
  if (u.hash !== '') throw storeUrlError(url, 'a #fragment has no meaning here (percent-encode "#" in a password as %23)');
  return u;
}

/** A boolean parameter: 1/true/yes or 0/false/no. */
export function storeUrlFlag(url: string, params: URLSearchParams, name: string): boolean | undefined {
  const v = params.get(name);
  if (v === null) return undefined;
  if (['1', 'true', 'yes'].includes(v)) return true;
  if (['0', 'false', 'no'].includes(v)) return false;
  throw storeUrlError(url, `${name} must be true or false, got ${quoteUrlPart(v, 20)}`);
}

/**
 * Splits `scheme://bucket/folder?query` for object stores. The folder comes
 * back percent-decoded with a trailing "/" ("jobs" and "jobs/" are one
 * folder), or undefined for none (the adapter's default).
 */
export function storeUrlBucket(url: string): { bucket: string; prefix: string | undefined; query: string } {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?$/is.exec(url);
  if (url.includes('@')) throw storeUrlError(url, "credentials do not belong in the URL; use the SDK's usual environment or config");
  if (!m) throw storeUrlError(url, 'write scheme://bucket/prefix (no #fragment)');
  const [, bucket = '', path = '', query = ''] = m;
  let prefix: string | undefined;
  try {
    prefix = decodeURIComponent(path.replace(/^\//, ''));
  } catch (error) {
    if (!(error instanceof URIError)) throw error;
    throw storeUrlError(url, 'bad percent-encoding in the prefix');
  }
  if (prefix === '') prefix = undefined;
  else if (!prefix.endsWith('/')) prefix += '/';
  return { bucket, prefix, query };
}
