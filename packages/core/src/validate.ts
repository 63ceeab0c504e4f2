import { InvalidArgumentError, InvalidKeyError } from './errors.js';
import type { JsonValue, Labels } from './record.js';

export const MAX_KEY_BYTES = 1024;
export const MAX_RUN_ID_LENGTH = 256;
export const MAX_FINGERPRINT_LENGTH = 512;
export const MAX_ERROR_LENGTH = 1024;
/** Ten years: longer durations are almost certainly a unit mistake (seconds vs ms). */
export const MAX_DURATION_MS = 10 * 365 * 24 * 3600 * 1000;
/**
 * Shortest lease: a lease must outlast a round trip to the store and a
 * heartbeat (a third of it), or its owner loses it while working. 1 ms
 * leases were accepted before and could never be held.
 */
export const MIN_LEASE_MS = 100;
/** Longest delay Node's timers take (2^31-1 ms, about 24.8 days); a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

// UTF-8 sizes are counted, not encoded: a key and a result are measured on every call, and an
// encoded copy of each was a measurable share of runOnce's own garbage. Both are well-formed here.
const utf8Bytes = (text: string): number => Buffer.byteLength(text, 'utf8');

export function validateKey(key: unknown): string {
  if (typeof key !== 'string') throw new InvalidKeyError(`key must be a string, got ${describeValue(key)}`);
  if (key.length === 0) throw new InvalidKeyError('key must not be empty');
  if (!key.isWellFormed()) throw new InvalidKeyError('key is not well-formed UTF-16 (lone surrogate): it has no UTF-8 form');
  const bytes = key.length * 3 <= MAX_KEY_BYTES ? 0 : utf8Bytes(key); // at most 3 bytes per UTF-16 unit
  if (bytes > MAX_KEY_BYTES) throw new InvalidKeyError(`key is ${bytes} bytes of UTF-8; the limit is ${MAX_KEY_BYTES}`);
  return key;
}

export function validateDuration(name: string, value: unknown, min = 1): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > MAX_DURATION_MS) {
    throw new InvalidArgumentError(`${name} must be a whole number of milliseconds in ${min}..${MAX_DURATION_MS}, got ${describeValue(value)}`);
  }
  return value;
}

/** A lease duration: at least MIN_LEASE_MS. */
export const validateLeaseMs = (name: string, value: unknown): number => validateDuration(name, value, MIN_LEASE_MS);

/** A size in bytes: a positive safe integer. */
export function validateSize(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidArgumentError(`${name} must be a whole number of bytes greater than 0, got ${describeValue(value)}`);
  }
  return value;
}

function validateText(name: string, value: unknown, max: number): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max || !value.isWellFormed()) {
    throw new InvalidArgumentError(`${name} must be a non-empty string of at most ${max} characters, got ${describeValue(value)}`);
  }
  return value;
}

/** At most this many labels on one claim. */
export const MAX_LABELS = 32;
/** A label's name: ASCII letters, digits, "_", ".", "-", "/", starting with a letter or digit (so every writer sorts names alike). */
const LABEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$/;
export const MAX_LABEL_VALUE_BYTES = 256;
/** Names under this prefix are idem's own, for later use. */
const RESERVED_LABEL_PREFIX = 'idem.';

/**
 * Labels as stored: a plain object of at most MAX_LABELS names (1-63 ASCII characters, not
 * under "idem.") to well-formed strings of at most 256 bytes of UTF-8, copied with their names
 * sorted. Do not put secrets in labels: they are stored and listed in clear, like keys.
 */
export function validateLabels(value: unknown): Labels {
  if (
    typeof value !== 'object' ||
    value === null ||
    Array.isArray(value) ||
    (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null)
  ) {
    throw new InvalidArgumentError(`labels must be a plain object of names to strings, got ${describeValue(value)}`);
  }
  const names = Object.keys(value).sort();
  if (names.length > MAX_LABELS) throw new InvalidArgumentError(`labels: ${names.length} given, at most ${MAX_LABELS}`);
  const out: Labels = {};
  for (const name of names) {
    if (!LABEL_NAME.test(name))
      throw new InvalidArgumentError(
        `label name ${describeValue(name)} must be 1-63 ASCII letters, digits, "_", ".", "-" or "/", starting with a letter or digit`,
      );
    if (name.startsWith(RESERVED_LABEL_PREFIX))
      throw new InvalidArgumentError(`label name ${describeValue(name)} is reserved (names starting "${RESERVED_LABEL_PREFIX}" are idem's)`);
    const v = (value as Record<string, unknown>)[name];
    if (typeof v !== 'string' || !v.isWellFormed() || utf8Bytes(v) > MAX_LABEL_VALUE_BYTES) {
      throw new InvalidArgumentError(`label ${name} must be a well-formed string of at most ${MAX_LABEL_VALUE_BYTES} bytes of UTF-8, got ${describeValue(v)}`);
    }
    out[name] = v;
  }
  return out;
}

/** What a claim says runs (`holder.program`): a name, not a path or a command line. */
export function validateProgram(value: unknown): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (typeof value !== 'string' || value.length === 0 || value.length > 128 || !value.isWellFormed() || /[/\u0000-\u001f\u007f]/.test(value)) {
    throw new InvalidArgumentError(
      `program must be a name of 1-128 characters without "/" or control characters (a basename, never arguments), got ${describeValue(value)}`,
    );
  }
  return value;
}

export const validateRunId = (value: unknown) => validateText('runId', value, MAX_RUN_ID_LENGTH);
export const validateFingerprint = (value: unknown) => validateText('fingerprint', value, MAX_FINGERPRINT_LENGTH);

export function validateDedupOn(value: unknown): 'success' | 'any' {
  if (value !== 'success' && value !== 'any') {
    throw new InvalidArgumentError(`dedupOn must be "success" or "any", got ${describeValue(value)}`);
  }
  return value;
}

export function validateBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean, got ${describeValue(value)}`);
  return value;
}

/**
 * Checks that a result is JSON data that comes back exactly as given, and
 * fits the store's limit; returns the JSON form. A duplicate must get the
 * very value the first run returned, so nothing JSON would silently change
 * is accepted: not NaN/Infinity, -0, integers beyond 2^53-1, undefined
 * (in arrays, objects or alone), functions, symbols, BigInt, sparse arrays,
 * symbol keys, Date/Map/Set/class instances (anything but plain objects and
 * arrays), cycles. Checked before any I/O.
 */
export function validateResult(value: unknown, maxBytes: number): JsonValue {
  let text: string;
  try {
    checkJson(value, undefined);
    text = JSON.stringify(value);
  } catch (error) {
    if (error instanceof NotExactJson)
      throw new InvalidArgumentError(`result $${error.path.reverse().join('')} ${error.why}: JSON would not give it back as it is`, error.cause);
    // A proxy's trap (or a getter read again by JSON.stringify) threw: the value cannot be read, so it cannot be stored.
    throw new InvalidArgumentError(`result cannot be read: reading it threw ${nameOf(error)}`, error);
  }
  const bytes = utf8Bytes(text);
  if (bytes > maxBytes) throw new InvalidArgumentError(`result is ${bytes} bytes of JSON; the store's limit is ${maxBytes}`);
  // A copy, so that the record returned and stored is what JSON gives back, whatever the caller
  // does to its value later. A string, number, boolean or null is its own copy.
  return typeof value === 'object' && value !== null ? (JSON.parse(text) as JsonValue) : (value as JsonValue);
}

/** Why a value is not exact JSON; its path is filled in, innermost step first, on the way out. */
class NotExactJson extends Error {
  readonly path: string[] = [];
  constructor(
    readonly why: string,
    cause?: unknown,
  ) {
    super(why, cause === undefined ? undefined : { cause });
  }
}

/**
 * Throws NotExactJson for anything JSON would not give back exactly. `ancestors`: the objects
 * around this one, to find cycles; made only once an object holds another. The path of a bad
 * value is built as the error passes up, so that a good value costs no path strings.
 */
function checkJson(value: unknown, ancestors: object[] | undefined): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new NotExactJson(`is ${value}`);
      if (Object.is(value, -0)) throw new NotExactJson('is -0');
      if (Number.isInteger(value) && !Number.isSafeInteger(value)) throw new NotExactJson(`is ${value}, an integer beyond 2^53-1 (store it as a string)`);
      return;
    case 'object':
      break;
    default:
      throw new NotExactJson(`is ${typeof value === 'undefined' ? 'undefined' : `a ${typeof value}`}`);
  }
  if (value === null) return;
  if (ancestors?.includes(value)) throw new NotExactJson('is circular');
  const proto = Object.getPrototypeOf(value);
  if (Array.isArray(value)) {
    if (proto !== Array.prototype) throw new NotExactJson('is an array subclass');
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) throw new NotExactJson(`has a hole at [${i}]`);
      try {
        checkItem(value[i], value, ancestors);
      } catch (error) {
        if (error instanceof NotExactJson) error.path.push(`[${i}]`);
        throw error;
      }
    }
    return;
  }
  if (proto !== Object.prototype && proto !== null)
    throw new NotExactJson(`is a ${(value as object).constructor?.name ?? 'non-plain object'}, not a plain object`);
  if (Object.getOwnPropertySymbols(value).length > 0) throw new NotExactJson('has symbol keys');
  const keys = Object.keys(value);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    try {
      checkItem(readProperty(value as Record<string, unknown>, k), value, ancestors);
    } catch (error) {
      if (error instanceof NotExactJson) error.path.push(`.${k}`);
      throw error;
    }
  }
}

/** `holder[key]`; a getter that throws makes the value unstorable (NotExactJson, the getter's error as cause). */
function readProperty(holder: Record<string, unknown>, key: string): unknown {
  try {
    return holder[key];
  } catch (cause) {
    throw new NotExactJson(`has a getter that throws ${nameOf(cause)}`, cause);
  }
}

/** The name of what was thrown, never its message (a message getter may throw too, or hold a secret). */
function nameOf(thrown: unknown): string {
  try {
    return thrown instanceof Error ? String(thrown.name) : typeof thrown;
  } catch (cause) {
    // Even the name getter throws: say what kind of value it was.
    return `an unreadable ${typeof thrown} (${typeof cause})`;
  }
}

/** Checks `item`, held by `holder`: an object with `holder` among its ancestors. */
function checkItem(item: unknown, holder: object, ancestors: object[] | undefined): void {
  if (typeof item !== 'object' || item === null) return checkJson(item, undefined);
  const around = ancestors ?? [];
  around.push(holder);
  checkJson(item, around);
  around.pop(); // only on success: after a throw the whole check is over
}

/** A short, storable summary of whatever was thrown. Never throws, whatever the value's getters do. */
export function summarizeError(error: unknown): string {
  let text: string;
  try {
    text = error instanceof Error ? `${error.name}: ${error.message}` : typeof error === 'string' ? error : safeJson(error);
    if (typeof text !== 'string') text = String(text);
  } catch (cause) {
    // A getter or toString that throws: record that something failed rather than leave the claim in flight.
    text = `unprintable ${typeof error} thrown (reading it threw ${cause instanceof Error ? cause.name : typeof cause})`;
  }
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH - 1)}…` : text;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    // Circular or BigInt values: fall back to the default conversion (the caller catches a throwing toString).
    return String(value);
  }
}

/** A short, safe description of a bad argument for error messages (no long strings echoed). */
export function describeValue(value: unknown): string {
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
