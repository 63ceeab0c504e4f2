// Flag parsing on node:util parseArgs, with every failure turned into a USAGE error.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { IdemError, InvalidArgumentError, InvalidKeyError, parseDuration, validateKey, validateLabels, type Labels } from '@idem/core';
import { loadIdemConfig, type IdemConfig } from './config.js';
import { usage } from './errors.js';
import { parseStoreUrl, type StoreSpec } from './store-url.js';

export type Env = Record<string, string | undefined>;

/** What parseArgs returns for these options, spelled out: the inferred type does not survive into .d.ts files. */
export type FlagValues<T extends ParseArgsOptionsConfig> = {
  [K in keyof T]?: T[K]['type'] extends 'boolean' ? (T[K]['multiple'] extends true ? boolean[] : boolean) : T[K]['multiple'] extends true ? string[] : string;
} & { help?: boolean };

/** Every command's flags, plus --help and --log-format (which main.ts has already applied). */
export function parseFlags<const T extends ParseArgsOptionsConfig>(
  command: string,
  argv: string[],
  options: T,
): { values: FlagValues<T>; positionals: string[] } {
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' }, 'log-format': { type: 'string' } },
      strict: true,
      allowPositionals: true,
    });
    return { values: parsed.values as FlagValues<T>, positionals: parsed.positionals };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      throw usage(`${command}: ${(error as Error).message.replace(/\. To specify a positional argument.*$/s, '')} (see idem ${command} --help)`, error);
    }
    throw error;
  }
}

export function duration(flag: string, text: string | undefined, fallback: string): number {
  return parseDuration(`--${flag}`, text ?? fallback);
}

export function int(flag: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw usage(`--${flag} must be a whole number in ${min}..${max}, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

export function oneOf<const V extends string>(flag: string, text: string | undefined, values: readonly V[], fallback: V): V {
  if (text === undefined) return fallback;
  if (!(values as readonly string[]).includes(text)) throw usage(`--${flag} must be ${values.join(', ')}; got ${JSON.stringify(text)}`);
  return text as V;
}

/** --store, else IDEM_STORE, else idem.toml's store, else the embedded store in ./.idem. The whole idem.toml is checked. */
export async function storeOf(flag: string | undefined, env: Env): Promise<StoreSpec> {
  return storeSpecOf(await loadIdemConfig({ env, flags: { store: flag } }));
}

/** The config's store, parsed (no I/O); an error about a URL from idem.toml names the file and line. */
export async function storeSpecOf(config: IdemConfig): Promise<StoreSpec> {
  const { store } = config;
  const url = store.url();
  try {
    return await parseStoreUrl(url, store.cwd);
  } catch (error) {
    if (store.source.from !== 'file' || !(error instanceof IdemError)) throw error;
    // Core's message is already free of the URL's secrets.
    throw new IdemError(error.code, `${store.source.path}:${store.source.line}: store: ${error.message}`, { cause: error, retryable: error.retryable });
  }
}

/** The key from a positional, --key, or IDEM_KEY (in that order). */
export function keyOf(command: string, given: string | undefined, env: Env): string {
  const key = given ?? env.IDEM_KEY;
  if (key === undefined) throw usage(`${command}: a key is required (--key K or IDEM_KEY)`);
  if (!readExactly(key, given === undefined ? 'IDEM_KEY' : undefined)) {
    throw new InvalidKeyError(
      `the key ${given === undefined ? 'in IDEM_KEY' : 'given'} is not valid UTF-8, so idem cannot read it exactly (two different keys would look the same); pass binary ids as hex, or derive a key with idem key`,
    );
  }
  return validateKey(key);
}

/** The same check for other text that becomes part of a key (`idem key` names, params, namespace). */
export function exactText(what: string, text: string, envName?: string): string {
  if (!readExactly(text, envName)) throw new InvalidArgumentError(`${what} is not valid UTF-8, so idem cannot read it exactly; pass binary data as hex`);
  return text;
}

/**
 * Node decodes invalid UTF-8 in argv and the environment as U+FFFD, so `caf\xe9` and `caf\xe8`
 * would arrive as one string. Text with U+FFFD is accepted only if the raw bytes show the
 * character really was there: on Linux /proc/self/cmdline and /proc/self/environ hold them
 * (environ: the environment idem started with). Where they cannot be read, U+FFFD is refused.
 */
function readExactly(text: string, envName?: string): boolean {
  if (!text.includes('\uFFFD')) return true;
  let raw: Buffer;
  try {
    raw = readFileSync(envName ? '/proc/self/environ' : '/proc/self/cmdline');
  } catch (error) {
    void error; // no /proc (macOS, a sandbox): the bytes cannot be checked, so the text is refused
    return false;
  }
  const strict = new TextDecoder('utf-8', { fatal: true });
  const prefix = envName ? Buffer.from(`${envName}=`) : undefined;
  let seen = false;
  for (let at = 0; at < raw.length; ) {
    const end = raw.indexOf(0, at) === -1 ? raw.length : raw.indexOf(0, at);
    let entry = raw.subarray(at, end);
    at = end + 1;
    if (prefix) {
      if (!entry.subarray(0, prefix.length).equals(prefix)) continue;
      entry = entry.subarray(prefix.length);
    }
    // Every raw argument that could have produced this text (as itself, or in --flag=text) must be valid UTF-8.
    if (!(prefix ? entry.toString('utf8') === text : entry.toString('utf8').includes(text))) continue;
    seen = true;
    try {
      strict.decode(entry);
    } catch (error) {
      void error; // invalid UTF-8: Node replaced bytes with U+FFFD
      return false;
    }
  }
  return seen;
}

/** `--label name=value`, repeatable: one name once. Checked by core (validateLabels) before any I/O. */
export function labelsOf(given: string[] | undefined): Labels | undefined {
  if (given === undefined || given.length === 0) return undefined;
  const labels: Labels = {};
  for (const text of given) {
    const eq = text.indexOf('=');
    if (eq <= 0) throw usage(`--label must be name=value, got ${JSON.stringify(text)}`);
    const name = text.slice(0, eq);
    if (Object.hasOwn(labels, name)) throw usage(`--label ${name} is given twice`);
    labels[name] = exactText(`--label ${name}`, text.slice(eq + 1));
  }
  return validateLabels(labels);
}

export function noPositionals(command: string, positionals: string[]): void {
  if (positionals.length > 0) throw usage(`${command}: unexpected argument ${JSON.stringify(positionals[0])} (see idem ${command} --help)`);
}
