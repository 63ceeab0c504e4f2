// `idem run`: claim the key, run the command while renewing the lease,
// record the outcome. The claim/renew/finish cycle is core's runOnce and the
// report is core's (`@idem/core/report`); this file adds the process side:
// flags, spawning, signals, exit codes and the human lines.
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { basename, delimiter, join } from 'node:path';
import {
  BackendUnavailableError,
  IdemError,
  InvalidArgumentError,
  LeaseLostError,
  runOnce,
  validateFingerprint,
  validateProgram,
  type IdemRecord,
  type Labels,
  type RunContext,
} from '@idem/core';
import { MAX_TIMER_MS } from '@idem/core/adapter';
import { buildRunReport, signalExitCode, type RunClaim, type RunEnd, type RunReport, type RunTimings } from '@idem/core/report';
import { duration, int, keyOf, labelsOf, parseFlags, storeSpecOf, type Env } from './args.js';
import { loadIdemConfig, sourceText } from './config.js';
import { CliError, EXIT, messageOf, usage } from './errors.js';
import { clean, holderText, info, paint, printError, printHelp, printJson, quote, waitingLine, type LogFields } from './output.js';
import type { StoreSpec } from './store-url.js';
import { startTelemetry, telemetryWanted, type Telemetry } from './telemetry.js';

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

/** After a lost lease, how long the command gets to stop on SIGTERM before SIGKILL. */
const KILL_GRACE_MS = 10_000;
/** After a signal while idem waits on the store: how long the store gets to give the key back. */
const STORE_GRACE_MS = 2_000;

// ---------------------------------------------------------------- flags

interface RunPlan {
  key: string;
  store: StoreSpec;
  command: string[];
  leaseMs: number;
  retentionMs: number;
  dedupOn: 'success' | 'any';
  onInFlight: 'skip' | 'wait' | 'fail';
  waitTimeoutMs: number;
  skipExitCode: number;
  fingerprint: string | undefined;
  labels: Labels | undefined;
  force: boolean;
  json: boolean;
  quiet: boolean;
  /** Export the run's spans over OTLP (--otel or IDEM_OTEL). */
  otel: boolean;
}

/** Parses and validates everything before any I/O; undefined when --help was asked. */
async function parseRun(argv: string[], env: Env): Promise<RunPlan | undefined> {
  // Everything after the first `--` is the command, never parsed as flags.
  const sep = argv.indexOf('--');
  const { values, positionals } = parseFlags('run', sep === -1 ? argv : argv.slice(0, sep), {
    key: { type: 'string', short: 'k' },
    store: { type: 'string', short: 's' },
    lease: { type: 'string' },
    retention: { type: 'string' },
    'dedup-on': { type: 'string' },
    fingerprint: { type: 'string' },
    label: { type: 'string', multiple: true },
    force: { type: 'boolean' },
    'on-in-flight': { type: 'string' },
    'wait-timeout': { type: 'string' },
    'skip-exit-code': { type: 'string' },
    json: { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
    otel: { type: 'boolean' },
  });
  if (values.help) return undefined;
  if (positionals.length > 0) throw usage(`run: the command goes after --, as in: idem run --key K -- ${positionals.join(' ')}`);
  const command = sep === -1 ? [] : argv.slice(sep + 1);
  const key = keyOf('run', values.key, env);
  // flag > environment > idem.toml > default, per setting; the whole file is checked before any I/O.
  const config = await loadIdemConfig({
    env,
    flags: {
      store: values.store,
      lease: values.lease,
      retention: values.retention,
      dedupOn: values['dedup-on'],
      onInFlight: values['on-in-flight'],
      labels: labelsOf(values.label),
    },
  });
  const store = await storeSpecOf(config);
  const { lease, retention } = config;
  if (retention.ms < lease.ms) {
    throw usage(
      `retention (${retention.value}, ${sourceText(retention.source)}) must be at least lease (${lease.value}, ${sourceText(lease.source)}): a record must outlive the lease that wrote it`,
    );
  }
  const labels = Object.entries(config.labels).map(([name, s]) => [name, s.value] as const);
  const plan: RunPlan = {
    key,
    store,
    command,
    leaseMs: lease.ms,
    retentionMs: retention.ms,
    dedupOn: config.dedupOn.value,
    onInFlight: config.onInFlight.value,
    waitTimeoutMs: duration('wait-timeout', values['wait-timeout'], '1h'),
    skipExitCode: int('skip-exit-code', values['skip-exit-code'], 0, 255) ?? 0,
    fingerprint: values.fingerprint === undefined ? undefined : validateFingerprint(values.fingerprint),
    labels: labels.length === 0 ? undefined : Object.fromEntries(labels),
    force: values.force ?? false,
    json: values.json ?? false,
    quiet: values.quiet ?? false,
    otel: telemetryWanted(values.otel, env),
  };
  if (command.length === 0 || command[0] === '') throw usage('run: no command; write it after --, as in: idem run --key K -- CMD ARGS...');
  return plan;
}

// ---------------------------------------------------------------- signals

// Forwarded to the command while it runs; before that they cancel the run.
// SIGQUIT too: Node's default for it kills idem at once and orphans the command.
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;
// Only forwarded (programs use it to reopen logs, print progress); it never cancels.
// bin.ts listens to it from the start, so Node's inspector never opens on it.
const PASSED_ON = ['SIGUSR1', 'SIGUSR2'] as const;

class Signals {
  /** Aborted by the first signal that arrives while no command runs. */
  readonly cancel = new AbortController();
  cancelledBy: NodeJS.Signals | undefined;
  /** True once a cancelled run stopped waiting for the store. */
  gaveUp = false;
  private child: ChildProcess | undefined;

  constructor() {
    for (const s of FORWARDED) process.on(s, this.onSignal);
    for (const s of PASSED_ON) process.on(s, this.passOn);
  }

  private running = () => this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;

  private onSignal = (signal: NodeJS.Signals) => {
    if (this.running()) {
      this.cancelledBy ??= signal;
      if (!this.cancel.signal.aborted) this.cancel.abort(new Cancelled(signal));
      this.child!.kill(signal);
      return;
    }
    // A second signal while idem waits on the store: stop now.
    if (this.cancelledBy) process.exit(signalExitCode(signal));
    this.cancelledBy = signal;
    this.cancel.abort(new Cancelled(signal));
  };

  private passOn = (signal: NodeJS.Signals) => {
    if (this.running()) this.child!.kill(signal);
  };

  attach(child: ChildProcess): void {
    this.child = child;
  }

  /**
   * Waits for `work`, unless a signal arrives first: then the store gets STORE_GRACE_MS to
   * finish (and give the key back); an unreachable store must not hold a cancelled run for its
   * whole timeout. A claim that lands later is left to its lease, as after kill -9.
   */
  async race<T>(work: Promise<T>): Promise<T> {
    const signal = this.cancel.signal;
    if (this.running()) return work;
    let onAbort: (() => void) | undefined;
    const cancelled = new Promise<never>((_, reject) => {
      onAbort = () => {
        if (this.running()) return; // a forwarded signal: the command decides when the run ends
        const timer = setTimeout(() => {
          this.gaveUp = true;
          reject(signal.reason);
        }, STORE_GRACE_MS);
        timer.unref();
        work.finally(() => clearTimeout(timer)).catch(() => undefined); // settles through `work` below
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    work.catch(() => undefined); // a rejection after we gave up is not an unhandled one
    try {
      return await Promise.race([work, cancelled]);
    } finally {
      if (onAbort) signal.removeEventListener('abort', onAbort);
    }
  }

  dispose(): void {
    for (const s of FORWARDED) process.off(s, this.onSignal);
    for (const s of PASSED_ON) process.off(s, this.passOn);
  }
}

// ---------------------------------------------------------------- the run

/** Phase timings of the report, in ms with one decimal. */
function stopwatch() {
  const started = performance.now();
  let phase = started;
  const timings: Partial<RunTimings> = {};
  const since = (from: number) => Math.round((performance.now() - from) * 10) / 10;
  return {
    timings,
    lap(name: Exclude<keyof RunTimings, 'total_ms'>) {
      timings[name] = since(phase);
      phase = performance.now();
    },
    total: () => (timings.total_ms = since(started)),
    elapsed: () => performance.now() - started,
  };
}

/** A human line, with its facts for --log-format json (silent under --quiet). */
type Say = typeof info;

interface Ran {
  end: RunEnd;
  claim?: RunClaim | undefined;
  /** The record behind a skip, for the human line. */
  record?: IdemRecord | undefined;
}

async function execute(
  plan: RunPlan,
  runId: string,
  signals: Signals,
  clock: ReturnType<typeof stopwatch>,
  say: Say,
  telemetry: Telemetry | undefined,
): Promise<Ran> {
  const { key, leaseMs, dedupOn } = plan;
  let claim: RunClaim | undefined;
  // Aborted when the command cannot start: runOnce then gives the key back instead of recording a failure.
  const giveBack = new AbortController();
  let commandRan = false;
  const waiting = waitingLine();

  const work = async (ctx: RunContext) => {
    waiting.done();
    try {
      clock.lap('claim_ms');
      const lease = ctx.lease;
      claim = { outcome: ctx.outcome, fence: lease.fence, attempt: lease.record.attempt };
      signals.cancel.signal.throwIfAborted();
      const from = ctx.outcome === 'adopted' && ctx.previous ? `, from run ${clean(ctx.previous.runId)}` : '';
      say(`${ctx.outcome} ${quote(key)} (fence ${lease.fence}${from}); running: ${clean(plan.command.map(shellQuote).join(' '))}`, {
        event: 'claimed',
        key,
        run_id: runId,
        outcome: ctx.outcome,
        fence: lease.fence,
        attempt: lease.record.attempt,
        ...(ctx.outcome === 'adopted' && ctx.previous ? { holder_run_id: ctx.previous.runId } : {}),
      });
      // Under --otel the command's spans join idem's run span: its context goes down as TRACEPARENT.
      const env = { ...process.env, IDEM_RUN_ID: runId, IDEM_FENCE: String(lease.fence), IDEM_ATTEMPT: String(lease.record.attempt), ...telemetry?.childEnv() };
      let exit: { code: number; signal: NodeJS.Signals | null };
      try {
        exit = await spawnAndWait(plan.command, env, ctx.signal, (child) => signals.attach(child));
      } catch (error) {
        if (error instanceof CliError && error.code === 'SPAWN_FAILED') giveBack.abort(error);
        throw error;
      }
      commandRan = true;
      clock.lap('command_ms');
      if (exit.code !== 0) throw new CommandFailed(exit.code, exit.signal);
      return undefined;
    } catch (error) {
      // Tag what is not ours to classify: any untyped error outside this function came from the store.
      if (error instanceof CommandFailed || error instanceof Cancelled || error instanceof IdemError || error instanceof CliError) throw error;
      throw new CliError('INTERNAL', messageOf(error), { cause: error });
    }
  };

  let store: Awaited<ReturnType<StoreSpec['open']>> | undefined;
  try {
    store = await signals.race(plan.store.open({ leaseMs, retentionMs: plan.retentionMs, dedupOn }));
    clock.lap('open_ms');
    const result = await signals.race(
      runOnce(store, key, work, {
        runId,
        leaseMs,
        // Clamped: a third of a lease above ~74 days would overflow Node's timer and renew every ms.
        renewEveryMs: Math.min(Math.max(1, Math.floor(leaseMs / 3)), MAX_TIMER_MS),
        force: plan.force,
        dedupOn,
        onInFlight: plan.onInFlight === 'fail' ? 'throw' : plan.onInFlight,
        waitTimeoutMs: plan.waitTimeoutMs,
        signal: AbortSignal.any([signals.cancel.signal, giveBack.signal]),
        ...(plan.quiet
          ? {}
          : {
              onWait: (record: IdemRecord, waitedMs: number) =>
                waiting.show(waitText(record, waitedMs), `${record.runId}:${record.fence}`, {
                  event: 'waiting',
                  key,
                  run_id: runId,
                  holder_run_id: record.runId,
                  fence: record.fence,
                }),
            }),
        ...(plan.fingerprint !== undefined ? { fingerprint: plan.fingerprint } : {}),
        ...(plan.labels !== undefined ? { labels: plan.labels } : {}),
        ...programOf(plan.command),
      }),
    );
    clock.lap(result.status === 'executed' ? 'finish_ms' : 'claim_ms');
    return { end: { kind: 'result', result, skipExitCode: plan.skipExitCode }, claim, record: result.record };
  } catch (error) {
    if (commandRan) clock.lap('finish_ms');
    if (error instanceof CommandFailed)
      return { end: { kind: 'command_failed', exitCode: error.exitCode, signal: error.signal, cancelledBy: signals.cancelledBy }, claim };
    if (error instanceof Cancelled) return { end: { kind: 'cancelled', signal: error.signal }, claim };
    if (error instanceof IdemError || error instanceof CliError) return { end: { kind: 'error', error, skipExitCode: plan.skipExitCode }, claim };
    // Untyped errors reach here only from the store (a full disk, a driver's own error): the backend failed.
    return { end: { kind: 'error', error: new BackendUnavailableError(`the store failed: ${messageOf(error)}${errnoOf(error)}`, error) }, claim };
  } finally {
    const closing = store
      ?.close()
      .catch((error: unknown) => printError('BACKEND_UNAVAILABLE', `closing the store: ${messageOf(error)}`, { key, run_id: runId }));
    // A run that gave up on an unanswering store does not wait for it to close (the process exits right after).
    if (!signals.gaveUp) await closing;
  }
}

const errnoOf = (error: unknown) => {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) && !messageOf(error).includes(code) ? ` (${code})` : '';
};

export async function runCommand(argv: string[], env: Env): Promise<number> {
  const plan = await parseRun(argv, env);
  if (!plan) return printHelp('run');
  const say: Say = plan.quiet ? () => {} : info;
  const runId = randomUUID();
  const clock = stopwatch();
  const signals = new Signals();
  let ran: Ran;
  let telemetry: Telemetry | undefined;
  try {
    // A command that cannot start must not claim the key (under --dedup-on any a typo would be final).
    checkExecutable(plan.command[0]!, env.PATH ?? '');
    telemetry = plan.otel ? await startTelemetry(env) : undefined;
    const t = telemetry;
    ran = await (t ? t.within(() => execute(plan, runId, signals, clock, say, t)) : execute(plan, runId, signals, clock, say, undefined));
  } catch (error) {
    if (!(error instanceof CliError && error.code === 'SPAWN_FAILED')) throw error;
    ran = { end: { kind: 'error', error } };
  } finally {
    signals.dispose();
    // Every span is sent before idem exits (an unreachable collector delays the exit by OTEL_EXPORTER_OTLP_TIMEOUT at most).
    await telemetry?.shutdown();
  }
  clock.total();
  const report = buildRunReport({ key: plan.key, runId, store: plan.store.display, end: ran.end, claim: ran.claim, timings: clock.timings });
  tell(report, ran, plan, clock.elapsed(), say);
  if (plan.json) printJson('run', report);
  return report.exit_code;
}

/** The human line that ends a run (errors: one `idem: CODE: message` line, even under --quiet). */
function tell(report: RunReport, ran: Ran, plan: RunPlan, elapsedMs: number, say: Say): void {
  const key = quote(report.key);
  const { end } = ran;
  // A JSON log line carries the report's facts, so a log shipper needs no --json on stdout.
  const fields: LogFields = {
    event: 'finished',
    key: report.key,
    run_id: report.run_id,
    status: report.status,
    exit_code: report.exit_code,
    outcome: report.outcome,
    fence: report.fence,
    attempt: report.attempt,
    ...(report.skipped_by_run_id !== null ? { holder_run_id: report.skipped_by_run_id } : {}),
  };
  if (report.error) return printError(report.error.code, report.error.message, fields);
  if (report.status === 'succeeded') return say(`${paint(2, 'ok', 'succeeded')} ${key} in ${fmt(elapsedMs)}`, fields);
  if ((report.status === 'skipped_idempotent' || report.status === 'skipped_in_flight') && ran.record)
    return say(skipLine(report.status, key, ran.record), fields);
  if (end.kind === 'cancelled') return say(`${paint(2, 'warn', 'cancelled')} ${key} by ${end.signal} before the command started`, fields, 'warn');
  if (end.kind === 'command_failed') {
    if (end.cancelledBy) return say(`${paint(2, 'warn', 'cancelled')} ${key} by ${end.cancelledBy}; the claim was released`, fields, 'warn');
    const why = end.signal ? `killed by ${end.signal}` : `exit code ${end.exitCode}`;
    const then = plan.dedupOn === 'success' ? ' (the key may be retried)' : ' (final under --dedup-on any)';
    return say(`${paint(2, 'bad', 'failed')} ${key}: ${why}${then}`, fields, 'error');
  }
}

function skipLine(status: 'skipped_idempotent' | 'skipped_in_flight', key: string, record: IdemRecord): string {
  const runId = clean(record.runId);
  if (status === 'skipped_in_flight')
    return `${paint(2, 'warn', 'skipped')} ${key}: run ${runId} holds it until ${new Date(record.leaseExpiresAt ?? 0).toISOString()}`;
  const when = record.completedAt === undefined ? '' : ` at ${new Date(record.completedAt).toISOString()}`;
  return `${paint(2, 'dim', 'skipped')} ${key}: already ${record.status} in run ${runId}${when}`;
}

// ---------------------------------------------------------------- the command

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
      // checkExecutable found the file: ENOENT now means its #! interpreter is missing (127, as bash says).
      const exitCode = error.code === 'ENOENT' ? EXIT.NOT_FOUND : EXIT.NOT_EXECUTABLE;
      const why =
        error.code === 'ENOENT' ? 'cannot execute: its interpreter (#! line) or the command was not found' : `cannot execute (${error.code ?? error.message})`;
      reject(new CliError('SPAWN_FAILED', `${JSON.stringify(command[0])}: ${why}`, { cause: error, exitCode }));
    });
    child.once('exit', (code, sig) => {
      done();
      resolve({ code: sig ? signalExitCode(sig) : (code ?? EXIT.INTERNAL), signal: sig });
    });
  });
}

/**
 * The holder's `program`: the command's basename only, never its arguments (they carry secrets).
 * A name core refuses (control characters, over 128 characters) is left out rather than fail the run.
 */
function programOf(command: string[]): { program?: string } {
  try {
    return { program: validateProgram(basename(command[0] ?? '')) };
  } catch (error) {
    if (error instanceof InvalidArgumentError) return {};
    throw error;
  }
}

/** Whom a waiting run waits for, since when, and when the holder's lease ends: stored text escaped. */
function waitText(record: IdemRecord, waitedMs: number): string {
  const who = holderText(record) ?? `run ${record.runId}`;
  const until = record.leaseExpiresAt !== undefined ? new Date(record.leaseExpiresAt).toISOString() : '?';
  return clean(`waiting ${Math.round(waitedMs / 1000)}s for ${who} (run ${record.runId}, lease until ${until})`);
}
