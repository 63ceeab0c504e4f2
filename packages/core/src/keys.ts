import { hash } from 'node:crypto';
import { InvalidArgumentError } from './errors.js';
import { validateKey } from './validate.js';

export function sha256Hex(text: string): string {
  // One-shot hash: under half the cost of createHash for short inputs, and it is on every call's path.
  return hash('sha256', text, 'hex');
}

/** The name a key is stored under on every backend: never the raw key. */
export function storageName(key: string): string {
  return sha256Hex(key);
}

/**
 * JSON with object keys sorted, so equal values give equal text whatever
 * their construction order. Only plain JSON data is accepted: anything with
 * no single obvious encoding (NaN, BigInt, functions, undefined, class
 * instances other than Date) is rejected instead of being guessed at. A Date
 * hashes as its ISO string and -0 as 0.
 */
export function canonicalJson(value: unknown): string {
  return encode(value, '$');
}

function encode(value: unknown, path: string): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new InvalidArgumentError(`${path} is ${value}: not representable in JSON`);
    return JSON.stringify(Object.is(value, -0) ? 0 : value);
  }
  if (Array.isArray(value)) return `[${value.map((v, i) => encode(v, `${path}[${i}]`)).join(',')}]`;
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (typeof value === 'object' && (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)) {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${encode(v, `${path}.${k}`)}`).join(',')}}`;
  }
  // undefined included: `{a: undefined}` and `{}` must not silently give the same key.
  throw new InvalidArgumentError(
    `${path} is ${value === undefined ? 'undefined' : `a ${typeof value === 'object' ? 'non-plain object' : typeof value}`}: only JSON data can be hashed`,
  );
}

/**
 * A deterministic key for "run this logical task once": the same
 * (namespace, name, params) always gives the same key.
 */
export function deriveKey(namespace: string, name: string, params: unknown = {}): string {
  for (const [label, v] of [
    ['namespace', namespace],
    ['name', name],
  ] as const) {
    if (typeof v !== 'string' || v.length === 0) throw new InvalidArgumentError(`${label} must be a non-empty string`);
  }
  const digest = sha256Hex(canonicalJson({ namespace, name, params }));
  return validateKey(`${namespace}:${name}:${digest}`);
}

/** A fingerprint of a request's parameters, to detect a key reused for a different request. */
export function fingerprint(params: unknown): string {
  return `sha256:${sha256Hex(canonicalJson(params))}`;
}
