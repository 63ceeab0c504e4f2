// The project config file, idem.toml: found from the working directory upward
// (stopping at a repository root, a directory holding .git, or /), validated
// whole before any store is opened, and merged with flags and the environment:
// flag > environment > file > default, per setting. Public: embedders load the
// same file with loadIdemConfig (README "Project config: idem.toml").
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InvalidArgumentError, parseDuration, validateLabels, type Labels } from '@idem/core';
import { redactStoreUrl } from '@idem/core/url';
import { CliError, messageOf } from './errors.js';
import { DEFAULT_STORE } from './store-url.js';

export const CONFIG_FILE = 'idem.toml';

/** Where a setting's value came from. */
export type ConfigSource = { from: 'flag'; name: string } | { from: 'env'; name: string } | { from: 'file'; path: string; line: number } | { from: 'default' };

export interface Setting<T> {
  value: T;
  source: ConfigSource;
}

export type DedupOn = 'success' | 'any';
export type OnInFlight = 'skip' | 'wait' | 'fail';

/** The effective settings, each with its source. */
export interface IdemConfig {
  /** The idem.toml that was read (absolute path), or undefined when none was found. */
  file: string | undefined;
  /**
   * The store: `value` is the URL redacted by `redactStoreUrl` (safe to print; from the file, with its
   * `${NAME}` references unexpanded). `url()` gives the URL to open, references expanded (it may hold a
   * secret: never print it); it throws when a referenced variable is missing, so a command that needs
   * no store never fails for one. `cwd` is the directory relative LMDB paths resolve against: the
   * file's directory for a URL from the file, the working directory otherwise.
   * Open it with `parseStoreUrl(config.store.url(), { cwd: config.store.cwd })`.
   */
  store: Setting<string> & { url(): string; cwd: string };
  /** The namespace of `idem key`. */
  namespace: Setting<string>;
  lease: Setting<string> & { ms: number };
  retention: Setting<string> & { ms: number };
  dedupOn: Setting<DedupOn>;
  onInFlight: Setting<OnInFlight>;
  /** The file's [labels] under the flags' ones (a flag wins per name), names sorted. */
  labels: Record<string, Setting<string>>;
}

/** Values given on the command line (or by an embedder's own flags): they win over everything. */
export interface ConfigFlags {
  store?: string | undefined;
  namespace?: string | undefined;
  lease?: string | undefined;
  retention?: string | undefined;
  dedupOn?: string | undefined;
  onInFlight?: string | undefined;
  labels?: Labels | undefined;
}

export interface LoadConfigOptions {
  /** Where the search for idem.toml starts (default: process.cwd()). */
  cwd?: string;
  /** The environment: IDEM_* settings and `${NAME}` references (default: process.env). */
  env?: Record<string, string | undefined>;
  flags?: ConfigFlags;
}

/** One setting: its key in the file, its flag, its environment variable, its default. */
const SETTINGS = {
  store: { key: 'store', flag: '--store', env: 'IDEM_STORE', fallback: DEFAULT_STORE },
  namespace: { key: 'namespace', flag: '--namespace', env: 'IDEM_NAMESPACE', fallback: 'default' },
  lease: { key: 'lease', flag: '--lease', env: 'IDEM_LEASE', fallback: '5m' },
  retention: { key: 'retention', flag: '--retention', env: 'IDEM_RETENTION', fallback: '30d' },
  dedupOn: { key: 'dedup_on', flag: '--dedup-on', env: 'IDEM_DEDUP_ON', fallback: 'success' },
  onInFlight: { key: 'on_in_flight', flag: '--on-in-flight', env: 'IDEM_ON_IN_FLIGHT', fallback: 'skip' },
} as const;
type Name = keyof typeof SETTINGS;

const FILE_KEYS = [...Object.values(SETTINGS).map((s) => s.key), 'labels'];
const DEDUP_ON = ['success', 'any'] as const;
const ON_IN_FLIGHT = ['skip', 'wait', 'fail'] as const;
/**
 * The shortest lease the CLI takes, above core's MIN_LEASE_MS (100 ms, the shortest lease a
 * store can hold): shorter leases renew too often to be useful for a process, and retention must
 * outlive them. Below it is a usage error.
 */
const CLI_MIN_LEASE_MS = 1_000;

/** The idem.toml nearest to `cwd`: that directory, then its parents up to a repository root (.git) or /. */
export function findConfigFile(cwd: string): string | undefined {
  for (let dir = resolve(cwd); ; ) {
    const file = join(dir, CONFIG_FILE);
    if (existsSync(file)) return file;
    const parent = dirname(dir);
    if (existsSync(join(dir, '.git')) || parent === dir) return undefined;
    dir = parent;
  }
}

const fail = (message: string) => new CliError('USAGE', message);

/** A value from the file, with its line. */
interface FileValue {
  value: unknown;
  line: number;
}

interface ParsedFile {
  path: string;
  values: Partial<Record<Name, FileValue>>;
  labels: Record<string, { value: string; line: number }>;
}

/** Reads and checks the file: TOML syntax, known keys, value types. Values are checked against their grammar later, with their source. */
async function readConfigFile(path: string): Promise<ParsedFile> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(path));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw fail(code ? `${path}: cannot read it (${code})` : `${path}: not valid UTF-8`);
  }
  const { parse, TomlError } = await import('smol-toml');
  let doc: Record<string, unknown>;
  try {
    doc = parse(text);
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    // Only the parser's first line: the rest quotes the file, which may hold a secret.
    const why = String(error.message)
      .split('\n')[0]!
      .replace(/^Invalid TOML document: /, '');
    throw fail(`${path}:${error.line}:${error.column}: not valid TOML: ${why}`);
  }
  const lines = keyLines(text);
  const lineOf = (...keys: string[]) => lines(keys);
  const parsed: ParsedFile = { path, values: {}, labels: {} };
  for (const [key, value] of Object.entries(doc)) {
    const line = lineOf(key);
    if (key === 'labels') {
      if (!isTable(value)) throw fail(`${path}:${line}: labels must be a table ([labels] with name = "value" lines), got ${typeName(value)}`);
      for (const [name, v] of Object.entries(value)) {
        const at = lineOf('labels', name);
        if (typeof v !== 'string') throw fail(`${path}:${at}: labels.${name} must be a string, got ${typeName(v)}`);
        parsed.labels[name] = { value: v, line: at };
      }
      continue;
    }
    const name = (Object.keys(SETTINGS) as Name[]).find((n) => SETTINGS[n].key === key);
    if (name === undefined) {
      const close = FILE_KEYS.find((k) => k === key.replace(/-/g, '_').toLowerCase());
      throw fail(`${path}:${line}: unknown key ${JSON.stringify(key)}${close ? ` (did you mean ${close}?)` : ''}; known keys: ${FILE_KEYS.join(', ')}`);
    }
    if (typeof value !== 'string')
      throw fail(`${path}:${line}: ${key} must be a string${name === 'lease' || name === 'retention' ? ' such as "5m"' : ''}, got ${typeName(value)}`);
    parsed.values[name] = { value, line };
  }
  return parsed;
}

const isTable = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);

function typeName(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date';
  if (isTable(value)) return 'a table';
  if (typeof value === 'string') return 'a string';
  return `${typeof value === 'bigint' || typeof value === 'number' ? 'a number' : `a ${typeof value}`} (${String(value)})`;
}

/**
 * The line of a key in the text, for error messages (the parser gives positions only for syntax
 * errors). Each `key = ...` line and `[table]` header is read as a dotted path; the line of the
 * exact path wins, else the longest path that contains it (`labels = { ... }`, `[labels]`).
 */
function keyLines(text: string): (path: string[]) => number {
  const SEGMENT = /\s*(?:([A-Za-z0-9_-]+)|"((?:[^"\\]|\\.)*)"|'([^']*)')\s*/y;
  const readPath = (line: string, from: number): { path: string[]; end: number } | undefined => {
    const path: string[] = [];
    let at = from;
    for (;;) {
      SEGMENT.lastIndex = at;
      const m = SEGMENT.exec(line);
      if (!m) return undefined;
      let part = m[1] ?? m[3];
      if (part === undefined) {
        try {
          part = JSON.parse(`"${m[2]}"`) as string;
        } catch (error) {
          void error; // an escape JSON does not know: compare the raw text
          part = m[2]!;
        }
      }
      path.push(part);
      at = SEGMENT.lastIndex;
      if (line[at] !== '.') return { path, end: at };
      at++;
    }
  };
  const found: { path: string[]; line: number }[] = [];
  let table: string[] = [];
  let multiline: string | undefined;
  text.split(/\r?\n/).forEach((line, i) => {
    if (multiline !== undefined) {
      // Inside a multi-line string: its lines are not keys.
      if (line.split(multiline).length % 2 === 0) multiline = undefined;
      return;
    }
    const header = /^\s*\[\[?/.exec(line);
    if (header) {
      const read = readPath(line, header[0].length);
      if (read && line[read.end] === ']') {
        table = read.path;
        found.push({ path: table, line: i + 1 });
      }
      return;
    }
    const read = readPath(line, 0);
    if (!read || line[read.end] !== '=') return;
    found.push({ path: [...table, ...read.path], line: i + 1 });
    const rest = line.slice(read.end + 1);
    for (const quote of ['"""', "'''"]) if (rest.split(quote).length % 2 === 0) multiline = quote;
  });
  const within = (inner: string[], outer: string[]) => inner.length >= outer.length && outer.every((p, i) => p === inner[i]);
  return (path) => {
    // The key itself, else the first line under it (`x.y = 1` for x), else the nearest line holding it.
    const exact = found.find((f) => f.path.length === path.length && within(f.path, path));
    const under = found.find((f) => within(f.path, path));
    let holder: { path: string[]; line: number } | undefined;
    for (const f of found) if (within(path, f.path) && (!holder || f.path.length > holder.path.length)) holder = f;
    return (exact ?? under ?? holder)?.line ?? 1;
  };
}

/**
 * `${NAME}` references in a store URL from the file, expanded; a missing (or empty) variable is an
 * error naming it, never its value. Without `env`, only checks the references' form.
 */
function expandEnv(text: string, env: Record<string, string | undefined> | undefined, where: string): string {
  return text.replace(/\$\{([^}]*)\}?/g, (whole, name: string) => {
    if (!whole.endsWith('}') || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      // Not quoted: the text after ${ may be part of a secret.
      throw fail(`${where}: "\${" must start a reference \${NAME} (letters, digits and _, closed by }); write a literal $ followed by { as %24{`);
    }
    if (env === undefined) return whole;
    const value = env[name];
    if (value === undefined || value === '') throw fail(`${where}: the environment variable ${name} is not set (or empty)`);
    return value;
  });
}

/**
 * The effective idem settings: flag > environment > idem.toml > default, each with its source.
 * Reads and checks the whole file (syntax, keys, values) and every given value; throws a
 * USAGE or INVALID_ARGUMENT error (exit 64) naming the file, the line and the key. Does no
 * store I/O: open the store with `parseStoreUrl(config.store.url(), { cwd: config.store.cwd })`.
 */
export async function loadIdemConfig(options: LoadConfigOptions = {}): Promise<IdemConfig> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const env = options.env ?? process.env;
  const flags = options.flags ?? {};
  const file = findConfigFile(cwd);
  const parsed = file === undefined ? undefined : await readConfigFile(file);

  /** The value and source of one setting, by precedence; `where` names it in messages. */
  const pick = (name: Name) => {
    const s = SETTINGS[name];
    const flag = flags[name];
    if (flag !== undefined) return { text: flag, source: { from: 'flag', name: s.flag } as ConfigSource, where: s.flag };
    // An empty variable counts as unset, as IDEM_STORE always has.
    const fromEnv = env[s.env];
    if (fromEnv !== undefined && fromEnv !== '') return { text: fromEnv, source: { from: 'env', name: s.env } as ConfigSource, where: s.env };
    const inFile = parsed?.values[name];
    if (inFile !== undefined) {
      return {
        text: inFile.value as string,
        source: { from: 'file', path: parsed!.path, line: inFile.line } as ConfigSource,
        where: `${parsed!.path}:${inFile.line}: ${s.key}`,
      };
    }
    return { text: s.fallback as string, source: { from: 'default' } as ConfigSource, where: `the default ${s.key}` };
  };
  // Every value in the file is checked, even one a flag overrides: a broken file fails wherever it is used.
  if (parsed) {
    for (const name of ['lease', 'retention', 'dedupOn', 'onInFlight', 'namespace'] as const) {
      const v = parsed.values[name];
      if (v !== undefined) check(name, v.value as string, `${parsed.path}:${v.line}: ${SETTINGS[name].key}`);
    }
    const store = parsed.values.store;
    if (store !== undefined) expandEnv(store.value as string, undefined, `${parsed.path}:${store.line}: store`);
    for (const [name, v] of Object.entries(parsed.labels)) checkLabel(name, v.value, `${parsed.path}:${v.line}: labels.${name}`);
  }

  const chosen = (name: Name) => {
    const p = pick(name);
    check(name, p.text, p.where);
    return p;
  };
  const store = pick('store');
  const storeUrl = () => (store.source.from === 'file' ? expandEnv(store.text, env, store.where) : store.text);
  const lease = chosen('lease');
  const retention = chosen('retention');
  const labels: Record<string, Setting<string>> = {};
  for (const [name, v] of Object.entries(parsed?.labels ?? {})) labels[name] = { value: v.value, source: { from: 'file', path: parsed!.path, line: v.line } };
  for (const [name, value] of Object.entries(flags.labels ?? {})) labels[name] = { value, source: { from: 'flag', name: '--label' } };
  // The merged set too (at most so many labels).
  validateLabels(Object.fromEntries(Object.entries(labels).map(([n, s]) => [n, s.value])));
  const sorted: Record<string, Setting<string>> = {};
  for (const name of Object.keys(labels).sort()) sorted[name] = labels[name]!;

  return {
    file,
    store: {
      value: redactStoreUrl(store.text),
      source: store.source,
      url: storeUrl,
      cwd: store.source.from === 'file' ? dirname(store.source.path) : cwd,
    },
    namespace: setting(chosen('namespace')),
    lease: { ...setting(lease), ms: parseDuration(lease.where, lease.text) },
    retention: { ...setting(retention), ms: parseDuration(retention.where, retention.text) },
    dedupOn: setting(chosen('dedupOn')) as Setting<DedupOn>,
    onInFlight: setting(chosen('onInFlight')) as Setting<OnInFlight>,
    labels: sorted,
  };
}

const setting = (p: { text: string; source: ConfigSource }): Setting<string> => ({ value: p.text, source: p.source });

/** One value against its setting's grammar; `where` is the flag, variable or file:line: key. */
function check(name: Name, text: string, where: string): void {
  const one = (values: readonly string[]) => {
    if (!values.includes(text)) throw fail(`${where} must be ${values.join(', ')}; got ${JSON.stringify(text)}`);
  };
  switch (name) {
    case 'lease':
      if (parseDuration(where, text) < CLI_MIN_LEASE_MS) throw fail(`${where} must be at least 1s, got ${JSON.stringify(text)}`);
      return;
    case 'retention':
      parseDuration(where, text);
      return;
    case 'dedupOn':
      return one(DEDUP_ON);
    case 'onInFlight':
      return one(ON_IN_FLIGHT);
    case 'namespace':
      if (text === '') throw new InvalidArgumentError(`${where} must not be empty`);
      return;
    case 'store':
      return;
  }
}

function checkLabel(name: string, value: string, where: string): void {
  try {
    validateLabels({ [name]: value });
  } catch (error) {
    throw fail(`${where}: ${messageOf(error)}`);
  }
}

/** A source as people read it: `--lease`, `env IDEM_LEASE`, `/repo/idem.toml:3`, `default`. */
export function sourceText(source: ConfigSource): string {
  switch (source.from) {
    case 'flag':
      return source.name;
    case 'env':
      return `env ${source.name}`;
    case 'file':
      return `${source.path}:${source.line}`;
    case 'default':
      return 'default';
  }
}
