import { InvalidArgumentError, InvalidKeyError } from './errors.js';
import type { JsonValue } from './record.js';

export const MAX_KEY_BYTES = 1024;
export const MAX_RUN_ID_LENGTH = 256;
export const MAX_FINGERPRINT_LENGTH = 512;
export const MAX_ERROR_LENGTH = 1024;
/** Ten years: longer durations are almost certainly a unit mistake (seconds vs ms). */
export const MAX_DURATION_MS = 10 * 365 * 24 * 3600 * 1000;

const encoder = new TextEncoder();

export function validateKey(key: unknown): string {
  if (typeof key !== 'string') throw new InvalidKeyError(`key must be a string, got ${describe(key)}`);
  if (key.length === 0) throw new InvalidKeyError('key must not be empty');
  if (!key.isWellFormed()) throw new InvalidKeyError('key is not well-formed UTF-16 (lone surrogate): it has no UTF-8 form');
  const bytes = encoder.encode(key).length;
  if (bytes > MAX_KEY_BYTES) throw new InvalidKeyError(`key is ${bytes} bytes of UTF-8; the limit is ${MAX_KEY_BYTES}`);
  return key;
}

export function validateDuration(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0 || value > MAX_DURATION_MS) {
    throw new InvalidArgumentError(`${name} must be a whole number of milliseconds in 1..${MAX_DURATION_MS}, got ${describe(value)}`);
  }
  return value;
}

function validateText(name: string, value: unknown, max: number): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max || !value.isWellFormed()) {
    throw new InvalidArgumentError(`${name} must be a non-empty string of at most ${max} characters, got ${describe(value)}`);
  }
  return value;
}

export const validateRunId = (value: unknown) => validateText('runId', value, MAX_RUN_ID_LENGTH);
export const validateFingerprint = (value: unknown) => validateText('fingerprint', value, MAX_FINGERPRINT_LENGTH);

export function validateDedupOn(value: unknown): 'success' | 'any' {
  if (value !== 'success' && value !== 'any') {
    throw new InvalidArgumentError(`dedupOn must be "success" or "any", got ${describe(value)}`);
  }
  return value;
}

export function validateBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean, got ${describe(value)}`);
  return value;
}

/** Checks that a result survives JSON and fits the store's limit; returns the JSON form. */
export function validateResult(value: unknown, maxBytes: number): JsonValue {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (cause) {
    throw new InvalidArgumentError('result must be JSON-serializable', cause);
  }
  if (text === undefined) throw new InvalidArgumentError(`result must be JSON-serializable, got ${describe(value)}`);
  const bytes = encoder.encode(text).length;
  if (bytes > maxBytes) throw new InvalidArgumentError(`result is ${bytes} bytes of JSON; the store's limit is ${maxBytes}`);
  return JSON.parse(text) as JsonValue;
}

/** A short, storable summary of whatever was thrown. */
export function summarizeError(error: unknown): string {
  const text =
    error instanceof Error ? `${error.name}: ${error.message}` : typeof error === 'string' ? error : safeJson(error);
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH - 1)}…` : text;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    // Circular or BigInt values: fall back to the default conversion, which never throws for these.
    return String(value);
  }
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return value.length > 40 ? `a string of length ${value.length}` : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "500ms", "30s", "5m", "2h", "30d" or a bare number of milliseconds. */
export function parseDuration(name: string, text: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`${name} must look like 500ms, 30s, 5m, 2h or 30d, got ${JSON.stringify(text)}`);
  return validateDuration(name, Number(m[1]) * UNITS[m[2] ?? 'ms']!);
}
