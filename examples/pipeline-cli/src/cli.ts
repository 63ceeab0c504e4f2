#!/usr/bin/env node
// An example pipeline CLI that embeds idem: its own `run` command gains
// --idempotency-key and --state-store, and prints idem's run report. It
// installs @idem/core and the adapters it wants (here LMDB and Valkey), and
// @idem/cli only for loadIdemConfig: the project's idem.toml (store, lease)
// configures the pipeline too. Run with Node >= 22.18 (TypeScript, type-stripped).
//
//   pipeline run export --idempotency-key export:2026-11-23 --state-store redis://127.0.0.1:6379 [--json]
import { parseArgs } from 'node:util';
import { appendFile } from 'node:fs/promises';
import { loadIdemConfig } from '@idem/cli';
import { runOnce } from '@idem/core';
import { buildRunReport, exitCodeOfError, errorMessageOf, EXIT_CODES, type RunReport } from '@idem/core/report';
import { parseStoreUrl } from '@idem/core/url';

/** The pipeline's own steps: each has a side effect a replay must not repeat. */
const STEPS: Record<string, () => Promise<{ rows: number }>> = {
  // Appends one line per run to the file named by PIPELINE_SINK: a double run shows as two lines.
  async export() {
    await appendFile(process.env.PIPELINE_SINK ?? 'export.log', `exported at ${new Date().toISOString()}\n`);
    return { rows: 1 };
  },
};

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'idempotency-key': { type: 'string' },
      'state-store': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const [command, stepName] = positionals;
  const step = stepName === undefined ? undefined : STEPS[stepName];
  if (command !== 'run' || step === undefined) {
    console.error(`usage: pipeline run <${Object.keys(STEPS).join('|')}> [--idempotency-key K] [--state-store URL] [--json]`);
    return EXIT_CODES.USAGE;
  }
  const key = values['idempotency-key'] ?? `${stepName}:${new Date().toISOString().slice(0, 10)}`;
  const runId = crypto.randomUUID();
  let report: RunReport;
  let display = '(unparsed store URL)';
  try {
    // The store: --state-store, else PIPELINE_STATE_STORE, else idem's own settings (IDEM_STORE,
    // idem.toml found from here up to the repository root), else this tool's default. The lease too.
    // A broken idem.toml is an error naming its file and line (exit 64), before any store is opened.
    const config = await loadIdemConfig({ cwd: process.cwd(), env: process.env, flags: { store: values['state-store'] ?? process.env.PIPELINE_STATE_STORE } });
    const fromIdem = config.store.source.from !== 'default';
    // Parsed without I/O; `display` never holds a password. The importer lets core load the
    // adapter this app installed (core cannot see an app's packages in every layout).
    const parsed = await parseStoreUrl(fromIdem ? config.store.url() : 'lmdb:.pipeline-state', {
      cwd: config.store.cwd,
      importer: (specifier) => import(specifier),
    });
    display = parsed.display;
    const leaseMs = config.lease.ms;
    const store = await parsed.open({ leaseMs, retentionMs: config.retention.ms });
    try {
      const result = await runOnce(store, key, () => step(), { runId, leaseMs });
      report = buildRunReport({ key, runId, store: display, end: { kind: 'result', result } });
    } finally {
      await store.close();
    }
  } catch (error) {
    report = buildRunReport({ key, runId, store: display, end: { kind: 'error', error } });
    if (!values.json) console.error(`pipeline: ${errorMessageOf(error)}`);
    if (values.json) console.log(JSON.stringify(report));
    return exitCodeOfError(error);
  }
  if (values.json) console.log(JSON.stringify(report));
  else console.error(`pipeline: ${report.status} (${key} in ${report.store})`);
  return report.exit_code;
}

process.exitCode = await run(process.argv.slice(2));
