// Human output goes to stderr (so a wrapped command's stdout stays clean);
// data (JSON, keys, listings) goes to stdout. Colour on a terminal or with
// FORCE_COLOR, never when NO_COLOR is set (https://no-color.org) or TERM is dumb.
import { writeSync } from 'node:fs';
import type { IdemRecord } from '@idem/core';
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

export const out = (line: string) => write(1, `${line}\n`);
export const info = (line: string) => write(2, `idem: ${line}\n`);

/** The one-line error format: `idem: CODE: message`. */
export function printError(code: string, message: string): void {
  write(2, `${paint(2, 'bad', `idem: ${code}:`)} ${message}\n`);
}

export const printJson = (value: unknown) => out(JSON.stringify(value));

/** Prints a help text; loaded only when asked for, to keep startup small. */
export async function printHelp(topic: Topic): Promise<number> {
  const { HELP } = await import('./help.js');
  out(HELP[topic]);
  return 0;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** A record as the CLI prints it: snake_case, ISO times. */
export function recordJson(record: IdemRecord, now: number) {
  return {
    key: record.key,
    status: record.status,
    run_id: record.runId,
    fence: record.fence,
    attempt: record.attempt,
    fingerprint: record.fingerprint ?? null,
    claimed_at: iso(record.claimedAt),
    lease_expires_at: iso(record.leaseExpiresAt),
    lease_dead: record.status === 'in_flight' ? (record.leaseExpiresAt ?? 0) <= now : null,
    completed_at: iso(record.completedAt),
    expires_at: iso(record.expiresAt),
    error: record.error ?? null,
    result: record.result ?? null,
  };
}

export function toneOf(status: string): Tone {
  return status === 'succeeded' ? 'ok' : status === 'failed' ? 'bad' : 'warn';
}
