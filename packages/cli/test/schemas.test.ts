// The schemas themselves: valid draft 2020-12, shipped and exported, pinned to the
// `schema` values the CLI prints, and kept equal to the TypeScript types (RunReport,
// RecordJson) so that neither can drift from the other.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { InFlightError, KeyReuseError, type IdemRecord, type Lease } from '@idem/core';
import { buildRunReport, RUN_REPORT_SCHEMA, RUN_STATUSES, type RunEnd, type RunReport, type RunStatus } from '@idem/core/report';
import { JSON_SCHEMAS, recordJson, type RecordJson } from '../src/output.js';
import { checkOutput, closed, newAjv, SCHEMAS, violations, type Schema } from './schemas.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { exports: Record<string, string>; files: string[] };
const props = (schema: Schema) => Object.keys(schema.properties as object);

/** Every field of a full RunReport, checked by the compiler: a field added to or removed from the type breaks this line. */
const RUN_REPORT_FIELDS: { [K in keyof RunReport]-?: true } = {
  schema: true,
  status: true,
  key: true,
  run_id: true,
  skipped_by_run_id: true,
  exit_code: true,
  store: true,
  outcome: true,
  fence: true,
  attempt: true,
  previous_status: true,
  signal: true,
  error: true,
  timings: true,
};
const TIMING_FIELDS: { [K in keyof RunReport['timings']]-?: true } = { open_ms: true, claim_ms: true, command_ms: true, finish_ms: true, total_ms: true };
const RECORD_FIELDS: { [K in keyof RecordJson]-?: true } = {
  key: true,
  status: true,
  run_id: true,
  fence: true,
  attempt: true,
  fingerprint: true,
  claimed_at: true,
  lease_expires_at: true,
  lease_dead: true,
  completed_at: true,
  expires_at: true,
  holder: true,
  labels: true,
  error: true,
  result: true,
};
const HOLDER_FIELDS: { [K in keyof NonNullable<RecordJson['holder']>]-?: true } = { host: true, pid: true, program: true, version: true };

const record = (over: Partial<IdemRecord>): IdemRecord =>
  ({ v: 1, key: 'k', status: 'succeeded', runId: 'r1', fence: 1, attempt: 1, claimedAt: 0, completedAt: 5, ...over }) as IdemRecord;

/** One report of every status, through every kind of end the builder takes. */
function sampleReports(): Map<RunStatus, RunReport[]> {
  const base = { key: 'k', runId: 'r2', store: 'lmdb:///x' };
  const claim = { outcome: 'acquired' as const, fence: 2, attempt: 2 };
  const done = record({ runId: 'r2', fence: 3, attempt: 2 });
  const busy = record({ status: 'in_flight', leaseExpiresAt: 10, completedAt: undefined });
  const lease = { key: 'k', name: 'n', runId: 'r2', fence: 3, leaseExpiresAt: 9, record: done } as Lease;
  const ends: [RunEnd, RunReport['timings'] | undefined][] = [
    [
      { kind: 'result', result: { status: 'executed', value: undefined, outcome: 'adopted', lease, record: done } },
      { open_ms: 1.5, claim_ms: 2, command_ms: 30.1, finish_ms: 2, total_ms: 36 },
    ],
    [{ kind: 'result', result: { status: 'completed', record: record({}), result: undefined }, skipExitCode: 3 }, undefined],
    [{ kind: 'result', result: { status: 'in_flight', record: busy } }, undefined],
    [{ kind: 'command_failed', exitCode: 3, signal: null }, undefined],
    [{ kind: 'command_failed', exitCode: 143, signal: 'SIGTERM', cancelledBy: 'SIGTERM' }, undefined],
    [{ kind: 'cancelled', signal: 'SIGINT' }, undefined],
    [{ kind: 'error', error: new InFlightError(busy) }, undefined],
    [{ kind: 'error', error: new KeyReuseError(record({ fingerprint: 'a' }), 'b') }, undefined],
    [{ kind: 'error', error: Object.assign(new Error('not found'), { code: 'SPAWN_FAILED', exitCode: 127 }) }, undefined],
    [{ kind: 'error', error: new Error('two\nlines') }, undefined],
  ];
  const byStatus = new Map<RunStatus, RunReport[]>();
  for (const [end, timings] of ends) {
    for (const withClaim of [undefined, claim]) {
      const report = buildRunReport({ ...base, end, claim: withClaim, timings });
      byStatus.set(report.status, [...(byStatus.get(report.status) ?? []), report]);
    }
  }
  return byStatus;
}

describe('the JSON Schemas of every --json output (packages/cli/schemas)', () => {
  it('are one per output, valid draft 2020-12 (strict), shipped and exported as @idem/cli/schemas/<command>.schema.json', () => {
    expect(Object.keys(SCHEMAS).sort()).toEqual(Object.keys(JSON_SCHEMAS).sort());
    expect(pkg.files).toContain('schemas');
    const require = createRequire(import.meta.url);
    for (const [command, schema] of Object.entries(SCHEMAS)) {
      expect(schema.$schema, command).toBe('https://json-schema.org/draft/2020-12/schema');
      newAjv().compile(schema); // as shipped: open objects
      newAjv().compile(closed(schema) as object); // as the tests use them
      expect(pkg.exports[`./schemas/${command}.schema.json`], command).toBe(`./schemas/${command}.schema.json`);
      expect(require.resolve(`@idem/cli/schemas/${command}.schema.json`)).toMatch(new RegExp(`/schemas/${command}\\.schema\\.json$`));
    }
  });

  it('pin each output’s schema field, the one the CLI prints, first and required', () => {
    for (const [command, schema] of Object.entries(SCHEMAS)) {
      expect((schema.properties as Schema).schema, command).toMatchObject({ const: JSON_SCHEMAS[command as keyof typeof JSON_SCHEMAS] });
      expect(JSON_SCHEMAS[command as keyof typeof JSON_SCHEMAS]).toBe(`idem.${command}/1`);
      expect(props(schema)[0]).toBe('schema');
    }
    expect(JSON_SCHEMAS.run).toBe(RUN_REPORT_SCHEMA);
  });

  it('require every field they list: an output never leaves one out (absent is null)', () => {
    const walk = (node: unknown, where: string): void => {
      if (Array.isArray(node)) {
        node.forEach((item, i) => {
          walk(item, `${where}/${i}`);
        });
        return;
      }
      if (node === null || typeof node !== 'object') return;
      const schema = node as Schema;
      const type = schema.type;
      if ((type === 'object' || (Array.isArray(type) && type.includes('object'))) && schema.properties) {
        expect([...(schema.required as string[])].sort(), where).toEqual(props(schema).sort());
      }
      for (const [name, value] of Object.entries(schema)) walk(value, `${where}/${name}`);
    };
    for (const [command, schema] of Object.entries(SCHEMAS)) walk(schema, command);
  });

  it('share one definition of a record, an error and a corrupt entry', () => {
    for (const name of ['record', 'error', 'corrupt']) {
      const defs = Object.entries(SCHEMAS).flatMap(([command, schema]) =>
        (schema.$defs as Schema | undefined)?.[name] ? [[command, (schema.$defs as Schema)[name]] as const] : [],
      );
      expect(defs.length, name).toBeGreaterThan(0);
      for (const [command, def] of defs) expect(def, `${command}: $defs.${name}`).toEqual(defs[0]![1]);
    }
  });

  it('the run schema is RunReport’s: the same fields, statuses, and every report buildRunReport makes validates', () => {
    const run = SCHEMAS.run!;
    expect(props(run).sort()).toEqual(Object.keys(RUN_REPORT_FIELDS).sort());
    expect([...(run.required as string[])].sort()).toEqual(Object.keys(RUN_REPORT_FIELDS).sort());
    const timings = (run.properties as Schema).timings as Schema;
    expect(props(timings).sort()).toEqual(Object.keys(TIMING_FIELDS).sort());
    expect(((run.properties as Schema).status as Schema).enum).toEqual([...RUN_STATUSES]);
    const reports = sampleReports();
    expect([...reports.keys()].sort()).toEqual([...RUN_STATUSES].sort());
    for (const [status, list] of reports) {
      for (const report of list) {
        expect(Object.keys(report).sort(), status).toEqual(Object.keys(RUN_REPORT_FIELDS).sort());
        expect(violations('run', JSON.parse(JSON.stringify(report))), `${status}: ${JSON.stringify(report)}`).toBeUndefined();
      }
    }
  });

  it('the record definition is recordJson’s: the same fields, and records with every field or none validate', () => {
    const def = (SCHEMAS.status!.$defs as Schema).record as Schema;
    expect(props(def).sort()).toEqual(Object.keys(RECORD_FIELDS).sort());
    expect(props((def.properties as Schema).holder as Schema).sort()).toEqual(Object.keys(HOLDER_FIELDS).sort());
    const full = record({
      status: 'in_flight',
      completedAt: 7,
      leaseExpiresAt: 9,
      expiresAt: 8.64e15,
      fingerprint: 'f',
      error: 'e',
      result: { rows: [1, null] },
      holder: { host: 'h', pid: 1, version: '0.1.0', program: 'sh' },
      labels: { a: 'b' },
    });
    const bare = record({ completedAt: undefined });
    for (const [name, r] of [
      ['full', full],
      ['bare', bare],
      ['no program', record({ holder: { host: 'h', pid: 2, version: '1' } })],
    ] as const) {
      const json = recordJson(r, 10);
      expect(Object.keys(json).sort(), name).toEqual(Object.keys(RECORD_FIELDS).sort());
      for (const [command, value] of [
        ['status', { schema: 'idem.status/1', key: 'k', store: 's', found: true, record: json, error: null }],
        ['list', { schema: 'idem.list/1', store: 's', count: 1, records: [json], corrupt: [{ name: 'n', reason: 'r' }], error: null }],
      ] as const) {
        expect(violations(command, JSON.parse(JSON.stringify(value))), `${name} in ${command}`).toBeUndefined();
      }
    }
  });

  it('refuse what the CLI must not print: an unlisted or missing field, another schema, a wrong type', () => {
    const ok = { schema: 'idem.sweep/1', store: 's', expired: 0, dead_leases: 0, native_expiry: false, error: null };
    expect(violations('sweep', ok)).toBeUndefined();
    expect(
      violations('sweep', { ...ok, error: { code: 'BACKEND_UNAVAILABLE', message: 'm' }, expired: null, dead_leases: null, native_expiry: null }),
    ).toBeUndefined();
    expect(violations('sweep', { ...ok, extra: 1 })).toMatch(/additional/);
    const { expired: _, ...missing } = ok;
    expect(violations('sweep', missing)).toMatch(/expired/);
    expect(violations('sweep', { ...ok, schema: 'idem.sweep/2' })).toMatch(/constant/);
    expect(violations('sweep', { ...ok, expired: null })).toMatch(/integer/); // null only with an error
    expect(violations('nosuch', {})).toMatch(/no schema for the JSON of idem nosuch/);
  });

  it('the test helper checks --json output only, and only idem’s own', () => {
    const bad = { schema: 'idem.key/1' };
    expect(() => checkOutput(['key', 'x', '--json'], bad)).toThrow(/key\.schema\.json/);
    expect(() => checkOutput(['key', 'x', '--json'], undefined)).not.toThrow(); // not JSON: help, human output
    expect(() => checkOutput(['status', 'k'], bad)).not.toThrow(); // no --json
    expect(() => checkOutput(['run', '--key', 'k', '--', 'echo', '--json'], bad)).not.toThrow(); // the command's own stdout
    expect(() => checkOutput(['run', '--json', '--key', 'k', '--', 'true'], bad)).toThrow(/run\.schema\.json/);
    expect(() => checkOutput(['nosuch', '--json'], {})).toThrow(/no schema/);
  });
});
