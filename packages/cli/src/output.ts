// Human output goes to stderr (so a wrapped command's stdout stays clean);
// data (JSON, keys, listings) goes to stdout. Colour on a terminal or with
// FORCE_COLOR, never when NO_COLOR is set (https://no-color.org) or TERM is dumb.
import { writeSync } from 'node:fs';
import { isLeaseDead, type IdemRecord } from '@idem/core';
import { RUN_REPORT_SCHEMA } from '@idem/core/report';
import type { Topic } from './help.js';

function useColor(fd: number): boolean {
  const env = process.env;
  if (fd === 2 && logFormat === 'json') return false; // a JSON log line carries no terminal codes
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

const escapeControl = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** Text from a store or the user, made safe for a terminal: control characters become \\uXXXX escapes. */
export const clean = (text: string) => text.replace(CONTROL, escapeControl);

/** A key (or other value) quoted for a human line, control characters escaped. */
export const quote = (text: string) => clean(JSON.stringify(text));

export const out = (line: string) => write(1, `${line}\n`);

/** How idem's own lines on stderr are written: `text` for people, `json` (one object per line) for log shippers. */
export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
let logFormat: LogFormat = 'text';

/** Set once, before the command runs (main.ts: --log-format, else IDEM_LOG_FORMAT). */
export function setLogFormat(format: LogFormat): void {
  logFormat = format;
}

/** What a JSON log line says besides its message: the run's facts, under the run report's names. */
export interface LogFields {
  /** What happened (schemas/log.schema.json lists every event). */
  event?: 'claimed' | 'waiting' | 'finished' | 'status' | 'checked' | 'swept' | 'released' | 'error';
  key?: string;
  run_id?: string;
  /** How the key was obtained: acquired or adopted. */
  outcome?: 'acquired' | 'adopted' | null;
  fence?: number | null;
  attempt?: number | null;
  /** How the run ended (the run report's status). */
  status?: string;
  exit_code?: number;
  /** The run that holds, held or finished the key, when it is another run. */
  holder_run_id?: string;
  code?: string;
}

/** Every field of a JSON log line after its message, null when a line has no such fact (as in every --json output). */
const NO_FIELDS: Required<{ [K in keyof LogFields]: null }> = {
  event: null,
  key: null,
  run_id: null,
  outcome: null,
  fence: null,
  attempt: null,
  status: null,
  exit_code: null,
  holder_run_id: null,
  code: null,
};

type Level = 'info' | 'warn' | 'error';

function emit(level: Level, message: string, fields: LogFields | undefined, text: string): void {
  if (logFormat === 'text') return log(text);
  const line = JSON.stringify({ schema: JSON_SCHEMAS.log, time: new Date().toISOString(), level, message, ...NO_FIELDS, ...fields });
  // JSON escapes C0 controls itself; C1 and bidi characters become \uXXXX too, which parse back the same.
  log(`${line.replace(CONTROL, escapeControl)}\n`);
}

/** One of idem's own lines: `idem: message`, or a JSON object with these fields under --log-format json. */
export const info = (line: string, fields?: LogFields, level: Level = 'info') => emit(level, line, fields, `idem: ${line}\n`);

/**
 * While `--on-in-flight wait` waits: on a terminal one status line, rewritten in place (and cleared
 * by `done`); elsewhere a plain log line when what it says changes (a new holder), so a log file
 * gets a line per holder, not per poll.
 */
export function waitingLine(): { show(text: string, key: string, fields?: LogFields): void; done(): void } {
  const tty = process.stderr.isTTY === true && process.env.TERM !== 'dumb' && logFormat === 'text';
  let shown = false;
  let lastKey: string | undefined;
  return {
    show(text, key, fields) {
      if (tty) {
        log(`\r\u001b[2Kidem: ${text}`);
        shown = true;
      } else if (key !== lastKey) {
        info(text, fields);
      }
      lastKey = key;
    },
    done() {
      if (shown) log('\r\u001b[2K');
      shown = false;
    },
  };
}

/** The one-line error format: `idem: CODE: message`. The message is escaped: it may quote stored data. */
export function printError(code: string, message: string, fields?: LogFields): void {
  emit('error', clean(message), { event: 'error', ...fields, code }, `${paint(2, 'bad', `idem: ${code}:`)} ${clean(message)}\n`);
}

/**
 * The `schema` field of each command's `--json` output, `idem.<command>/<major>`: the one place
 * they are set, and printJson puts it first in every object. Each has its JSON Schema in
 * schemas/<command>.schema.json (shipped as @idem/cli/schemas/<command>.schema.json), which pins
 * the value with `const`. Within a major, fields are only added, never renamed or removed; a
 * change that breaks a reader bumps the major. `run`'s is core's: embedders print the same report.
 */
export const JSON_SCHEMAS = {
  run: RUN_REPORT_SCHEMA,
  status: 'idem.status/1',
  list: 'idem.list/1',
  check: 'idem.check/1',
  sweep: 'idem.sweep/1',
  release: 'idem.release/1',
  key: 'idem.key/1',
  config: 'idem.config/1',
  /** Not a command's: each line idem writes on stderr under --log-format json. */
  log: 'idem.log/1',
  // A new command with --json adds its entry here and its schemas/<command>.schema.json
  // (and the package.json export); the end-to-end tests refuse JSON output without a schema.
} as const;

export type JsonOutput = keyof typeof JSON_SCHEMAS;

/** Prints one command's `--json` object on one line, with its `schema` first (a value that has one must agree: run's report). */
export function printJson<C extends JsonOutput, V extends object>(
  command: C,
  value: V & ('schema' extends keyof V ? { schema: (typeof JSON_SCHEMAS)[C] } : unknown),
): void {
  out(JSON.stringify({ schema: JSON_SCHEMAS[command], ...value }));
}

/** Prints a help text; loaded only when asked for, to keep startup small. */
export async function printHelp(topic: Topic): Promise<number> {
  const { HELP } = await import('./help.js');
  out(HELP[topic]);
  return 0;
}

/** An epoch-ms time as ISO 8601 (null when absent); the one time format of every output. */
export const isoTime = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** A record as the CLI prints it (status, list, check, release): snake_case, ISO times; `$defs.record` of their schemas. */
export type RecordJson = ReturnType<typeof recordJson>;

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
  record.labels &&
  Object.entries(record.labels)
    .map(([name, value]) => `${name}=${value}`)
    .join(' ');
