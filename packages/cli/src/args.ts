// Flag parsing on node:util parseArgs, with every failure turned into a USAGE error.
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { parseDuration, validateKey } from '@idem/core';
import { usage } from './errors.js';
import { DEFAULT_STORE, parseStoreUrl, type StoreSpec } from './store-url.js';

export type Env = Record<string, string | undefined>;

export function parseFlags<const T extends ParseArgsOptionsConfig>(command: string, argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: true });
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

/** --store, else IDEM_STORE, else the embedded store in ./.idem. */
export function storeOf(flag: string | undefined, env: Env): Promise<StoreSpec> {
  return parseStoreUrl(flag ?? (env.IDEM_STORE || DEFAULT_STORE));
}

/** The key from a positional, --key, or IDEM_KEY (in that order). */
export function keyOf(command: string, given: string | undefined, env: Env): string {
  const key = given ?? env.IDEM_KEY;
  if (key === undefined) throw usage(`${command}: a key is required (--key K or IDEM_KEY)`);
  return validateKey(key);
}

export function noPositionals(command: string, positionals: string[]): void {
  if (positionals.length > 0) throw usage(`${command}: unexpected argument ${JSON.stringify(positionals[0])} (see idem ${command} --help)`);
}
