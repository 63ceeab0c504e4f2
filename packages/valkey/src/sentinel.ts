// Sentinel URLs and the replica-acknowledgement query, parsed without I/O.
//
//   redis+sentinel://[user:password@]host[:port][,host[:port]...]/masterName[/db][?query]
//   valkey+sentinel://...                        (the same)
//
// userinfo authenticates to the data nodes (primary and replicas); the
// sentinels' own auth is sentinelUsername / sentinelPassword in the query,
// because many deployments run sentinels without a password (and AUTH to a
// server without one fails the connection). A sentinel without a port is 26379.
// Query: sentinelUsername, sentinelPassword, prefix, minReplicas, replicaTimeoutMs, fsync.
//
// No error message quotes any part of the URL: a malformed URL may put a
// password anywhere (e.g. an unencoded "/" or "@" inside it).
import { InvalidStoreUrlError } from '@idem/core';

export interface SentinelTarget {
  sentinels: Array<{ host: string; port: number }>;
  /** The master name the sentinels monitor. */
  name: string;
  db: number;
  username?: string;
  password?: string;
  sentinelUsername?: string;
  sentinelPassword?: string;
  prefix?: string;
  minReplicas?: number;
  replicaTimeoutMs?: number;
  fsync?: boolean;
}

const SCHEME = /^(redis|valkey)\+sentinel:\/\//i;
const DEFAULT_SENTINEL_PORT = 26379;

export const isSentinelUrl = (url: string): boolean => SCHEME.test(url);

const bad = (why: string) => new InvalidStoreUrlError(`sentinel URL: ${why} (expected redis+sentinel://[user:password@]host:port,host:port/masterName[/db])`);

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch (cause) {
    throw new InvalidStoreUrlError(`sentinel URL: bad percent-encoding in the ${what}`, cause);
  }
}

/** Parses a redis+sentinel:// or valkey+sentinel:// URL; INVALID_STORE_URL on anything else. */
export function parseSentinelUrl(url: string): SentinelTarget {
  if (typeof url !== 'string' || !SCHEME.test(url)) throw bad('the scheme must be redis+sentinel:// or valkey+sentinel://');
  const rest = url.replace(SCHEME, '');
  if (rest.includes('#')) throw bad('a fragment (#) is not allowed; percent-encode # in a password as %23');
  const q = rest.indexOf('?');
  const [main, query] = q === -1 ? [rest, ''] : [rest.slice(0, q), rest.slice(q + 1)];
  // The userinfo ends at the last "@" (a password may hold an unencoded "@"); hosts and path follow it.
  const at = main.lastIndexOf('@');
  const userinfo = at === -1 ? undefined : main.slice(0, at);
  const afterAt = main.slice(at + 1);
  const slash = afterAt.indexOf('/');
  if (slash === -1) throw bad('the master name is missing');
  const hostList = afterAt.slice(0, slash);
  const path = afterAt
    .slice(slash + 1)
    .replace(/\/$/, '')
    .split('/');

  const target: SentinelTarget = { sentinels: [], name: '', db: 0 };
  for (const [i, entry] of hostList.split(',').entries()) {
    const m = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/.exec(entry);
    const port = m?.[2] === undefined ? DEFAULT_SENTINEL_PORT : Number(m[2]);
    if (!m || port < 1 || port > 65535) throw bad(`sentinel number ${i + 1} is not host[:port]`);
    target.sentinels.push({ host: m[1]!.replace(/^\[|\]$/g, ''), port });
  }
  const [name = '', db, ...extra] = path;
  if (!/^[A-Za-z0-9._-]{1,200}$/.test(name)) throw bad('the master name must be 1-200 of letters, digits, ".", "_" or "-"');
  if (db !== undefined) {
    if (!/^\d{1,5}$/.test(db)) throw bad('the database must be a number');
    target.db = Number(db);
  }
  if (extra.length > 0) throw bad('too many path segments');
  target.name = name;

  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    const user = colon === -1 ? userinfo : userinfo.slice(0, colon);
    if (user !== '') target.username = decode(user, 'user name');
    if (colon !== -1) target.password = decode(userinfo.slice(colon + 1), 'password');
  }

  const params = new URLSearchParams(query);
  const known = ['sentinelUsername', 'sentinelPassword', 'prefix', 'minReplicas', 'replicaTimeoutMs', 'fsync'];
  for (const key of new Set(params.keys())) {
    if (!known.includes(key)) throw bad(`unknown query parameter (known: ${known.join(', ')})`);
    if (params.getAll(key).length > 1) throw bad('a query parameter is given twice');
  }
  const sentinelUsername = params.get('sentinelUsername');
  const sentinelPassword = params.get('sentinelPassword');
  if (sentinelUsername !== null) target.sentinelUsername = sentinelUsername;
  if (sentinelPassword !== null) target.sentinelPassword = sentinelPassword;
  const prefix = prefixParam(params, bad);
  if (prefix !== undefined) target.prefix = prefix;
  Object.assign(target, replicaParams(params, bad));
  return target;
}

/** prefix= of any URL form: not empty, no braces (the store sets the hash tags). */
export function prefixParam(params: URLSearchParams, fail: (why: string) => Error): string | undefined {
  const prefix = params.get('prefix') ?? undefined;
  if (prefix === '') throw fail('prefix must not be empty');
  if (prefix !== undefined && /[{}]/.test(prefix)) throw fail('prefix must not hold { or } (the store sets hash tags itself)');
  return prefix;
}

/** minReplicas / replicaTimeoutMs / fsync from a URL query (both URL forms use it). */
export function replicaParams(params: URLSearchParams, fail: (why: string) => Error): { minReplicas?: number; replicaTimeoutMs?: number; fsync?: boolean } {
  const out: { minReplicas?: number; replicaTimeoutMs?: number; fsync?: boolean } = {};
  const fsync = params.get('fsync');
  if (fsync !== null) {
    if (!['1', 'true', 'yes', '0', 'false', 'no'].includes(fsync)) throw fail('fsync must be true or false');
    out.fsync = ['1', 'true', 'yes'].includes(fsync);
  }
  for (const name of ['minReplicas', 'replicaTimeoutMs'] as const) {
    const v = params.get(name);
    if (v === null) continue;
    if (!/^\d{1,9}$/.test(v)) throw fail(`${name} must be a whole number`);
    out[name] = Number(v);
  }
  return out;
}
