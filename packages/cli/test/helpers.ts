// Spawns the BUILT binary (run `pnpm build` first), as users do.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '@idem/test-fixtures';
import { checkOutput } from './schemas.js';

export const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run pnpm build first`);

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as one JSON object, when it is one. */
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever shape each command prints
  json: any;
}

export interface Options {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** node flags before the script (e.g. --import). */
  nodeArgs?: string[];
  bin?: string;
}

/** The test's own IDEM_* variables never leak into a spawned idem. */
function envOf(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const name of Object.keys(env)) if (name.startsWith('IDEM_')) delete env[name];
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

/** Human output is not JSON: left undefined for the test to judge. */
function parseJson(text: string): unknown {
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    if (error instanceof SyntaxError) return undefined;
    throw error;
  }
}

export function start(args: string[], options: Options = {}): { child: ChildProcess; done: Promise<Result>; exited: Promise<void> } {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), options.bin ?? BIN, ...args], {
    cwd: options.cwd ?? tempDir('idem-cli-cwd-'),
    env: envOf(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<Result>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const json = parseJson(stdout);
      // Every --json object any test gets is checked against its command's schema (schemas.ts).
      try {
        checkOutput(args, json);
      } catch (error) {
        reject(error);
        return;
      }
      resolve({ code, signal, stdout, stderr, json });
    });
  });
  // 'close' waits for stdio too, which an orphaned grandchild may hold open: 'exit' does not.
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, done, exited };
}

export const idem = (args: string[], options: Options = {}) => start(args, options).done;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `check` is true; fails after `timeoutMs`. */
export async function until(check: () => boolean, timeoutMs = 15_000, what = 'condition', everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

export const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

/**
 * A run that holds `key` (it writes "ran" to `file`, then waits) until the test calls `release`:
 * a loaded machine cannot make it finish before the others claim.
 */
export async function heldOwner(store: string, key: string, file: string) {
  const go = `${file}-go`;
  const owner = start([
    'run',
    '--key',
    key,
    '--store',
    store,
    '--json',
    '--',
    'sh',
    '-c',
    'echo ran >> "$1"; until [ -e "$2" ]; do sleep 0.05; done',
    'sh',
    file,
    go,
  ]);
  await until(() => lines(file).length === 1, 60_000, 'the owner to start');
  return { owner, release: () => writeFileSync(go, '') };
}

/** A fresh LMDB store URL in its own directory. */
export const freshStore = () => `lmdb:${join(tempDir('idem-cli-store-'), 'db')}`;

let seq = 0;
export const freshKey = (label = 'k') => `${label}-${process.pid}-${seq++}`;

/** The exact key set of `idem run --json`. */
export const RUN_REPORT_KEYS = [
  'attempt',
  'error',
  'exit_code',
  'fence',
  'key',
  'outcome',
  'previous_status',
  'run_id',
  'schema',
  'signal',
  'skipped_by_run_id',
  'status',
  'store',
  'timings',
];
