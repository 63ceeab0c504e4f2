// Human output goes to stderr (so a wrapped command's stdout stays clean);
// data (JSON, keys, listings) goes to stdout. Colour on a terminal or with
// FORCE_COLOR, never when NO_COLOR is set (https://no-color.org) or TERM is dumb.
import { writeSync } from 'node:fs';
import { isLeaseDead, type IdemRecord } from '@idem/core';
import type { Topic } from './help.js';

function useColor(fd: number): boolean {
  const env = process.env;
  if (env.NO_COLOR) return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  return env.TERM !== 'dumb' && (fd === 1 ? process.stdout.isTTY : process.stderr.isTTY) === true;
}

export type Tone = 'ok' | 'bad' | 'warn' | 'dim';
const SGR: Record<Tone, string> = { ok: '32', bad: '31', warn: '33', dim: '2' };

export function paint(fd: number, tone: Tone, text: string): string {
  return useColor(fd) ? `\u001b[${SGR[tone]}m${text}\u001b[0m` : text;
}

// Synchronous writes: the process may exit right after, and output must not be lost.
function write(fd: number, text: string): void {
  writeSync(fd, text);
}

/**
 * idem's own log lines. A failing stderr (2>/dev/full, a closed pipe, EAGAIN) is ignored:
 * logging must never decide a run's outcome nor stop the command from running, and there
 * is nowhere left to report the failure. Data on stdout (--json, keys) still fails loudly.
 */
function log(text: string): void {
  try {
    writeSync(2, text);
  } catch (error) {
    void error; // deliberately dropped: see above
  }
}

// C0 and C1 controls, DEL, and bidi overrides/isolates: a stored key or error must not drive the terminal.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** Text from a store or the user, made safe for a terminal: control characters become \\uXXXX escapes. */
export const clean = (text: string) => text.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** A key (or other value) quoted for a human line, control characters escaped. */
export const quote = (text: string) => clean(JSON.stringify(text));

export const out = (line: string) => write(1, `${line}\n`);
export const info = (line: string) => log(`idem: ${line}\n`);

/** The one-line error format: `idem: CODE: message`. The message is escaped: it may quote stored data. */
export function printError(code: string, message: string): void {
  log(`${paint(2, 'bad', `idem: ${code}:`)} ${clean(message)}\n`);
}

export const printJson = (value: unknown) => out(JSON.stringify(value));

/** Prints a help text; loaded only when asked for, to keep startup small. */
export async function printHelp(topic: Topic): Promise<number> {
  const { HELP } = await import('./help.js');
  out(HELP[topic]);
  return 0;
}

/** An epoch-ms time as ISO 8601 (null when absent); the one time format of every output. */
export const isoTime = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** A record as the CLI prints it: snake_case, ISO times. */
export function recordJson(record: IdemRecord, now: number) {
  return {
    key: record.key,
    status: record.status,
    run_id: record.runId,
    fence: record.fence,
    attempt: record.attempt,
    fingerprint: record.fingerprint ?? null,
    claimed_at: isoTime(record.claimedAt),
    lease_expires_at: isoTime(record.leaseExpiresAt),
    lease_dead: record.status === 'in_flight' ? isLeaseDead(record, now) : null,
    completed_at: isoTime(record.completedAt),
    expires_at: isoTime(record.expiresAt),
    holder: record.holder ? { host: record.holder.host, pid: record.holder.pid, program: record.holder.program ?? null, version: record.holder.version } : null,
    labels: record.labels ?? null,
    error: record.error ?? null,
    result: record.result ?? null,
  };
}

export function toneOf(status: string): Tone {
  return status === 'succeeded' ? 'ok' : status === 'failed' ? 'bad' : 'warn';
}

/** `host pid N (program)` for people; stored text, to be escaped by the caller. */
export function holderText(record: IdemRecord): string | undefined {
  const h = record.holder;
  return h && `${h.host} pid ${h.pid}${h.program !== undefined ? ` (${h.program})` : ''}, idem ${h.version}`;
}

/** `name=value name=value`, names sorted as stored; stored text, to be escaped by the caller. */
export const labelsText = (record: IdemRecord): string | undefined =>
  record.labels && Object.entries(record.labels).map(([name, value]) => `${name}=${value}`).join(' ');
