// `idem run`: claim the key, run the command while renewing the lease,
// record the outcome. The claim/renew/finish cycle is core's runOnce; this
// file adds the process side: spawning, signals, exit codes and the report.
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { constants } from 'node:os';
import { delimiter, join } from 'node:path';
import {
  InFlightError,
  LeaseLostError,
  runOnce,
  validateFingerprint,
  type ClaimOutcome,
  type IdempotencyStore,
  type IdemRecord,
} from '@idem/core';
import { duration, int, keyOf, oneOf, parseFlags, storeOf, type Env } from './args.js';
import { CliError, codeOf, EXIT, exitCodeOf, messageOf, usage } from './errors.js';
import { info, paint, printError, printHelp, printJson } from './output.js';

/** The command ran and did not exit 0. Its message is what the failed record stores. */
class CommandFailed extends Error {
  constructor(
    readonly exitCode: number,
    readonly signal: NodeJS.Signals | null,
  ) {
    super(signal ? `killed by ${signal}` : `exit code ${exitCode}`);
    this.name = 'CommandFailed';
  }
}

/** idem itself was interrupted before the command started. */
class Cancelled extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`cancelled by ${signal}`);
    this.name = 'Cancelled';
  }
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const signalExit = (signal: NodeJS.Signals) => 128 + (constants.signals[signal] ?? 0);
/** After a lost lease, how long the command gets to stop on SIGTERM before SIGKILL. */
const KILL_GRACE_MS = 10_000;

export type RunStatus = 'succeeded' | 'failed' | 'skipped_idempotent' | 'skipped_in_flight' | 'cancelled' | 'error';

export async function runCommand(argv: string[], env: Env): Promise<number> {
  // Everything after the first `--` is the command, never parsed as flags.
  const sep = argv.indexOf('--');
  const { values, positionals } = parseFlags('run', sep === -1 ? argv : argv.slice(0, sep), {
    key: { type: 'string', short: 'k' },
    store: { type: 'string', short: 's' },
    lease: { type: 'string' },
    retention: { type: 'string' },
    'dedup-on': { type: 'string' },
    fingerprint: { type: 'string' },
    force: { type: 'boolean' },
    'on-in-flight': { type: 'string' },
    'wait-timeout': { type: 'string' },
    'skip-exit-code': { type: 'string' },
    json: { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
  });
  if (values.help) return printHelp('run');
  if (positionals.length > 0) throw usage(`run: the command goes after --, as in: idem run --key K -- ${positionals.join(' ')}`);
  const command = sep === -1 ? [] : argv.slice(sep + 1);
  // All validation happens here, before the store is opened.
  const key = keyOf('run', values.key, env);
  const spec = await storeOf(values.store, env);
  const leaseMs = duration('lease', values.lease, '5m');
  const retentionMs = duration('retention', values.retention, '30d');
  const dedupOn = oneOf('dedup-on', values['dedup-on'], ['success', 'any'], 'success');
  const onInFlight = oneOf('on-in-flight', values['on-in-flight'], ['skip', 'wait', 'fail'], 'skip');
  const waitTimeoutMs = duration('wait-timeout', values['wait-timeout'], '1h');
  const skipExitCode = int('skip-exit-code', values['skip-exit-code'], 0, 255) ?? 0;
  const fingerprint = values.fingerprint === undefined ? undefined : validateFingerprint(values.fingerprint);
  if (command.length === 0 || command[0] === '') throw usage('run: no command; write it after --, as in: idem run --key K -- CMD ARGS...');
  // A command that cannot start must not claim the key (under --dedup-on any a typo would be final).
  checkExecutable(command[0]!, env.PATH ?? '');
  const say = values.quiet ? () => {} : info;
  const started = performance.now();
  const runId = randomUUID();

  const report = {
    status: 'error' as RunStatus,
    key,
    run_id: runId,
    skipped_by_run_id: null as string | null,
    exit_code: EXIT.INTERNAL as number,
    store: spec.display,
    outcome: null as 'acquired' | 'adopted' | null,
    fence: null as number | null,
    attempt: null as number | null,
    previous_status: null as string | null,
    signal: null as string | null,
    error: null as { code: string; message: string } | null,
    timings: { open_ms: 0, claim_ms: 0, command_ms: 0, finish_ms: 0, total_ms: 0 },
  };
  const mark = (from: number) => Math.round((performance.now() - from) * 10) / 10;

  // Signals: forwarded to the command while it runs; before that they cancel the claim.
  const cancel = new AbortController();
  let child: ChildProcess | undefined;
  let cancelledBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (child && child.exitCode === null && child.signalCode === null) {
      cancelledBy ??= signal;
      if (!cancel.signal.aborted) cancel.abort(new Cancelled(signal));
      child.kill(signal);
      return;
    }
    // A second signal while idem waits on the store (an unreachable server, say): stop now.
    if (cancelledBy) process.exit(signalExit(signal));
    cancelledBy = signal;
    cancel.abort(new Cancelled(signal));
  };
  for (const s of FORWARDED) process.on(s, onSignal);

  let store: IdempotencyStore | undefined;
  let phase = performance.now();
  try {
    store = await spec.open({ leaseMs, retentionMs, dedupOn });
    report.timings.open_ms = mark(phase);
    phase = performance.now();
    // Observe the claim runOnce makes, to report how the key was obtained.
    let claimed: ClaimOutcome | undefined;
    const observed: IdempotencyStore = Object.create(store);
    observed.claim = async (k, o) => (claimed = await store!.claim(k, o));

    const result = await runOnce(
      observed,
      key,
      async (ctx) => {
        report.timings.claim_ms = mark(phase);
        const lease = ctx.lease;
        report.outcome = claimed?.outcome === 'adopted' ? 'adopted' : 'acquired';
        report.fence = lease.fence;
        report.attempt = lease.record.attempt;
        if (cancel.signal.aborted) throw cancel.signal.reason;
        const previous = claimed && 'previous' in claimed ? claimed.previous : undefined;
        say(
          `${report.outcome} ${JSON.stringify(key)} (fence ${lease.fence}${previous && report.outcome === 'adopted' ? `, from run ${previous.runId}` : ''}); running: ${command.map(shellQuote).join(' ')}`,
        );
        phase = performance.now();
        const exit = await spawnAndWait(command, { ...process.env, IDEM_RUN_ID: runId, IDEM_FENCE: String(lease.fence), IDEM_ATTEMPT: String(lease.record.attempt) }, ctx.signal, (c) => {
          child = c;
        });
        report.timings.command_ms = mark(phase);
        phase = performance.now();
        if (exit.code !== 0) throw new CommandFailed(exit.code, exit.signal);
        return undefined;
      },
      {
        runId,
        leaseMs,
        force: values.force ?? false,
        dedupOn,
        onInFlight: onInFlight === 'fail' ? 'throw' : onInFlight,
        waitTimeoutMs,
        signal: cancel.signal,
        ...(fingerprint !== undefined ? { fingerprint } : {}),
      },
    );
    if (result.status === 'executed') {
      report.timings.finish_ms = mark(phase);
      Object.assign(report, { status: 'succeeded', exit_code: 0 });
      say(`${paint(2, 'ok', 'succeeded')} ${JSON.stringify(key)} in ${fmt(performance.now() - started)}`);
    } else {
      report.timings.claim_ms = mark(phase);
      skipped(report, result.status === 'completed' ? 'skipped_idempotent' : 'skipped_in_flight', result.record, skipExitCode);
      say(skipLine(report.status, key, result.record));
    }
  } catch (error) {
    report.timings.finish_ms = report.timings.command_ms ? mark(phase) : 0;
    if (error instanceof CommandFailed) {
      // After a forwarded signal the claim was released (a cancelled run records no outcome).
      const status = cancelledBy ? 'cancelled' : 'failed';
      Object.assign(report, { status, exit_code: error.exitCode, signal: error.signal });
      say(
        status === 'cancelled'
          ? `${paint(2, 'warn', 'cancelled')} ${JSON.stringify(key)} by ${cancelledBy}; the claim was released`
          : `${paint(2, 'bad', 'failed')} ${JSON.stringify(key)}: ${error.message}${dedupOn === 'success' ? ' (the key may be retried)' : ' (final under --dedup-on any)'}`,
      );
    } else if (error instanceof Cancelled) {
      Object.assign(report, { status: 'cancelled', exit_code: signalExit(error.signal) });
      say(`${paint(2, 'warn', 'cancelled')} ${JSON.stringify(key)} by ${error.signal} before the command started`);
    } else {
      const exit = exitCodeOf(error);
      if (error instanceof InFlightError) skipped(report, 'skipped_in_flight', error.record, exit);
      else report.status = error instanceof CliError && error.code === 'SPAWN_FAILED' ? 'failed' : 'error';
      report.exit_code = exit;
      report.error = { code: codeOf(error), message: messageOf(error) };
      printError(report.error.code, report.error.message);
    }
  } finally {
    for (const s of FORWARDED) process.off(s, onSignal);
    await store?.close().catch((error: unknown) => printError(codeOf(error), `closing the store: ${messageOf(error)}`));
  }
  report.timings.total_ms = mark(0);
  if (values.json) printJson(report);
  return report.exit_code;
}

function skipped(report: { status: RunStatus; skipped_by_run_id: string | null; previous_status: string | null; exit_code: number }, status: RunStatus, record: IdemRecord, exit: number) {
  report.status = status;
  report.skipped_by_run_id = record.runId;
  report.previous_status = record.status;
  report.exit_code = exit;
}

function skipLine(status: RunStatus, key: string, record: IdemRecord): string {
  if (status === 'skipped_in_flight') {
    return `${paint(2, 'warn', 'skipped')} ${JSON.stringify(key)}: run ${record.runId} holds it until ${new Date(record.leaseExpiresAt ?? 0).toISOString()}`;
  }
  const when = record.completedAt === undefined ? '' : ` at ${new Date(record.completedAt).toISOString()}`;
  return `${paint(2, 'dim', 'skipped')} ${JSON.stringify(key)}: already ${record.status} in run ${record.runId}${when}`;
}

/** Finds the command as execvp would; SPAWN_FAILED (127 not found, 126 not executable) otherwise. */
function checkExecutable(name: string, path: string): void {
  const candidates = name.includes('/') ? [name] : path.split(delimiter).map((dir) => join(dir || '.', name));
  let denied = false;
  for (const file of candidates) {
    try {
      if (!statSync(file).isFile()) {
        denied = true;
        continue;
      }
      accessSync(file, fsConstants.X_OK);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EACCES') denied = true;
      else if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
    }
  }
  throw new CliError('SPAWN_FAILED', `${JSON.stringify(name)}: ${denied ? 'not executable' : 'command not found'}`, {
    exitCode: denied ? EXIT.NOT_EXECUTABLE : EXIT.NOT_FOUND,
  });
}

/** The command as one would type it, for the human log line. */
const shellQuote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`);

const fmt = (ms: number) => (ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(1)}s`);

/**
 * Runs the command with inherited stdio. If the lease is lost (another run
 * took the key over), the command is stopped: SIGTERM, then SIGKILL.
 */
async function spawnAndWait(
  command: string[],
  env: NodeJS.ProcessEnv,
  signal: AbortSignal,
  started: (child: ChildProcess) => void,
): Promise<{ code: number; signal: NodeJS.Signals | null }> {
  // Loaded here: a skipped run never spawns, and startup time is the CLI's main cost.
  const { spawn } = await import('node:child_process');
  signal.throwIfAborted(); // a signal or a lost lease during that await: do not start
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), { stdio: 'inherit', env });
    started(child);
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      if (!(signal.reason instanceof LeaseLostError)) return; // a forwarded signal was already sent
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
      killTimer.unref();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const done = () => {
      signal.removeEventListener('abort', onAbort);
      clearTimeout(killTimer);
    };
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (child.pid !== undefined) return; // a failed kill() of a running child; its exit event still comes
      done();
      const exitCode = error.code === 'ENOENT' ? EXIT.NOT_FOUND : EXIT.NOT_EXECUTABLE;
      const why = error.code === 'ENOENT' ? 'command not found' : `cannot execute (${error.code ?? error.message})`;
      reject(new CliError('SPAWN_FAILED', `${JSON.stringify(command[0])}: ${why}`, { cause: error, exitCode }));
    });
    child.once('exit', (code, sig) => {
      done();
      resolve({ code: sig ? signalExit(sig) : (code ?? EXIT.INTERNAL), signal: sig });
    });
  });
}
