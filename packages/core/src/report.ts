// The run report: what `idem run --json` prints, as a typed value an embedder's
// own CLI can build and print too. Light on purpose (`@idem/core/report`): it
// imports no store, adapter or runner code, only types and node:os's signal table.
import { constants } from 'node:os';
import type { IdemErrorCode } from './errors.js';
import type { IdemRecord } from './record.js';
import type { RunResult } from './runner.js';

/** Every status a run report can have. */
export const RUN_STATUSES = ['succeeded', 'failed', 'skipped_idempotent', 'skipped_in_flight', 'cancelled', 'error'] as const;
/**
 * `succeeded`/`failed`: the command ran and exited 0 / non-zero; `skipped_idempotent`: an earlier run
 * finished the key; `skipped_in_flight`: another run holds it; `cancelled`: interrupted by a signal, the
 * claim was released; `error`: the runner's own error (in `error.code`).
 */
export type RunStatus = (typeof RUN_STATUSES)[number];

/** Exit codes of a run that did not take the command's own code (sysexits.h where one fits). */
export const EXIT_CODES = {
  OK: 0,
  /** `status`: no record; `check`: dead leases found. */
  NEGATIVE: 1,
  USAGE: 64,
  KEY_REUSE: 65,
  UNAVAILABLE: 69,
  INTERNAL: 70,
  CORRUPT: 74,
  IN_FLIGHT: 75,
  LEASE_LOST: 76,
  /** The setup must change (EX_CONFIG): a refusing or unsafe backend, a missing adapter. Retrying is no use. */
  CONFIG: 78,
  NOT_EXECUTABLE: 126,
  NOT_FOUND: 127,
} as const;

/** The exit code of each stable error code (every code has one); any other code is INTERNAL (70). */
export const EXIT_CODE_BY_ERROR: Readonly<Record<IdemErrorCode, number>> = Object.freeze({
  USAGE: EXIT_CODES.USAGE,
  INVALID_ARGUMENT: EXIT_CODES.USAGE,
  INVALID_KEY: EXIT_CODES.USAGE,
  INVALID_STORE_URL: EXIT_CODES.USAGE,
  KEY_REUSE_MISMATCH: EXIT_CODES.KEY_REUSE,
  BACKEND_UNAVAILABLE: EXIT_CODES.UNAVAILABLE,
  BACKEND_REFUSED: EXIT_CODES.CONFIG,
  UNSAFE_BACKEND: EXIT_CODES.CONFIG,
  ADAPTER_MISSING: EXIT_CODES.CONFIG,
  INTERNAL: EXIT_CODES.INTERNAL,
  CORRUPT_RECORD: EXIT_CODES.CORRUPT,
  IN_FLIGHT: EXIT_CODES.IN_FLIGHT,
  LEASE_LOST: EXIT_CODES.LEASE_LOST,
  SPAWN_FAILED: EXIT_CODES.NOT_FOUND,
});

/** The stable code of anything thrown (an IdemError's or a code listed above), else INTERNAL. */
export function errorCodeOf(error: unknown): IdemErrorCode {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && Object.hasOwn(EXIT_CODE_BY_ERROR, code) ? (code as IdemErrorCode) : 'INTERNAL';
}

/** The exit code for an error: its own numeric `exitCode` (126/127 for spawn failures) or its code's. */
export function exitCodeOfError(error: unknown): number {
  const own = (error as { exitCode?: unknown } | null)?.exitCode;
  if (typeof own === 'number' && Number.isInteger(own) && own >= 0 && own <= 255) return own;
  return EXIT_CODE_BY_ERROR[errorCodeOf(error)] ?? EXIT_CODES.INTERNAL;
}

/** An error's message on one line, whatever it holds (a throwing `message` getter included). */
export function errorMessageOf(error: unknown): string {
  let text: string;
  try {
    text = error instanceof Error ? String(error.message) : String(error);
  } catch (cause) {
    // A hostile or broken error object must not stop the report being written.
    text = `(unprintable error: ${cause instanceof Error ? cause.name : typeof cause})`;
  }
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** 128 + N for signal N, as shells report a process killed by a signal. */
export const signalExitCode = (signal: string): number => 128 + ((constants.signals as Record<string, number>)[signal] ?? 0);

export interface RunTimings {
  open_ms: number;
  claim_ms: number;
  command_ms: number;
  finish_ms: number;
  total_ms: number;
}

/**
 * The `schema` field of every run report: `idem.run/<major>`. @idem/cli ships its JSON Schema
 * (`@idem/cli/schemas/run.schema.json`, which pins this value). Within a major, fields are only
 * added, never renamed or removed; a change that breaks a reader bumps the major.
 */
export const RUN_REPORT_SCHEMA = 'idem.run/1';

/** One object per run, in snake_case: the `--json` output of `idem run`. */
export interface RunReport {
  /** Which schema (and major version) this object follows: always `idem.run/1` here. */
  schema: typeof RUN_REPORT_SCHEMA;
  status: RunStatus;
  key: string;
  run_id: string;
  /** The run that holds or finished the key, when this one skipped. */
  skipped_by_run_id: string | null;
  exit_code: number;
  /** The store, as printed (no secret). */
  store: string;
  /** How the key was obtained, when the command ran. */
  outcome: 'acquired' | 'adopted' | null;
  fence: number | null;
  attempt: number | null;
  /** The status of the record that made this run skip. */
  previous_status: IdemRecord['status'] | null;
  /** The signal that killed the command, or that cancelled the run before it started. */
  signal: string | null;
  error: { code: string; message: string } | null;
  timings: RunTimings;
}

/** The key as this run obtained it (from `RunContext`: `ctx.outcome`, `ctx.lease`). */
export interface RunClaim {
  outcome: 'acquired' | 'adopted';
  fence: number;
  attempt: number;
}

/** How a run ended. */
export type RunEnd =
  /** runOnce returned: executed (the work succeeded), or skipped. Skips exit `skipExitCode` (default 0). */
  | { kind: 'result'; result: RunResult<unknown>; skipExitCode?: number }
  /** The work ran and exited non-zero (`exitCode` 128+N when killed by `signal`); `cancelledBy` when it followed a forwarded signal. */
  | { kind: 'command_failed'; exitCode: number; signal: string | null; cancelledBy?: string | undefined }
  /** A signal stopped the run before the work started; the claim, if any, was given back. */
  | { kind: 'cancelled'; signal: string }
  /** Anything thrown: a typed error's code decides the exit code; IN_FLIGHT reports the holder. */
  | { kind: 'error'; error: unknown; skipExitCode?: number };

export interface RunReportInput {
  key: string;
  runId: string;
  store: string;
  end: RunEnd;
  /** When the work started (runOnce's `ctx`); taken from the result when it executed. */
  claim?: RunClaim | undefined;
  timings?: Partial<RunTimings> | undefined;
}

const ZERO: RunTimings = { open_ms: 0, claim_ms: 0, command_ms: 0, finish_ms: 0, total_ms: 0 };

/** Builds the report of one run from what the runner returned or threw. Pure: no I/O. */
export function buildRunReport(input: RunReportInput): RunReport {
  const { end } = input;
  const claim =
    end.kind === 'result' && end.result.status === 'executed'
      ? { outcome: end.result.outcome, fence: end.result.lease.fence, attempt: end.result.lease.record.attempt }
      : input.claim;
  const base: RunReport = {
    schema: RUN_REPORT_SCHEMA,
    status: 'error',
    key: input.key,
    run_id: input.runId,
    skipped_by_run_id: null,
    exit_code: EXIT_CODES.INTERNAL,
    store: input.store,
    outcome: claim?.outcome ?? null,
    fence: claim?.fence ?? null,
    attempt: claim?.attempt ?? null,
    previous_status: null,
    signal: null,
    error: null,
    timings: { ...ZERO, ...input.timings },
  };
  const skipped = (status: 'skipped_idempotent' | 'skipped_in_flight', record: IdemRecord, exit: number): RunReport => ({
    ...base,
    status,
    skipped_by_run_id: record.runId,
    previous_status: record.status,
    exit_code: exit,
  });
  switch (end.kind) {
    case 'result': {
      const { result } = end;
      if (result.status === 'executed') return { ...base, status: 'succeeded', exit_code: EXIT_CODES.OK };
      return skipped(result.status === 'completed' ? 'skipped_idempotent' : 'skipped_in_flight', result.record, end.skipExitCode ?? EXIT_CODES.OK);
    }
    case 'command_failed':
      return { ...base, status: end.cancelledBy ? 'cancelled' : 'failed', exit_code: end.exitCode, signal: end.signal };
    case 'cancelled':
      return { ...base, status: 'cancelled', exit_code: signalExitCode(end.signal), signal: end.signal };
    case 'error': {
      const code = errorCodeOf(end.error);
      const error = { code, message: errorMessageOf(end.error) };
      const exit = exitCodeOfError(end.error);
      const record = (end.error as { record?: IdemRecord } | null)?.record;
      if (code === 'IN_FLIGHT' && record) return { ...skipped('skipped_in_flight', record, exit), error };
      // A command that could not start was not run: failed, although the key was given back.
      return { ...base, status: code === 'SPAWN_FAILED' ? 'failed' : 'error', exit_code: exit, error };
    }
  }
}
