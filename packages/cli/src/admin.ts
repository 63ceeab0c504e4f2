// Operator commands: status, list, check, sweep, release, key, config.
import {
  BackendUnavailableError,
  deriveKey,
  IdemError,
  isLeaseDead,
  type CorruptEntry,
  type IdempotencyStore,
  type IdemRecord,
  type ListOptions,
} from '@idem/core';
import { duration, exactText, keyOf, labelsOf, noPositionals, oneOf, parseFlags, storeOf, storeSpecOf, type Env } from './args.js';
import { loadIdemConfig, sourceText, type ConfigSource, type Setting } from './config.js';
import { CliError, codeOf, EXIT, messageOf, usage } from './errors.js';
import {
  clean,
  holderText,
  info,
  isoTime,
  labelsText,
  out,
  paint,
  printHelp,
  printJson,
  quote,
  recordJson,
  toneOf,
  type JsonOutput,
  type RecordJson,
} from './output.js';
import type { StoreSpec } from './store-url.js';

/**
 * Opens the store for an operator command; none creates an LMDB store that is not there (nothing to show, sweep or release),
 * and the read-only ones (status, list, check) open LMDB read-only: monitoring works on a read-only filesystem.
 * When the store fails, `--json` still prints one object on stdout (`json.fields`, the output's every
 * other field, plus `store` and `error`), as `run` does, and an untyped error from a driver (a full disk,
 * say) is BACKEND_UNAVAILABLE.
 */
async function withStore<T>(
  spec: StoreSpec,
  readOnly: boolean,
  json: { command: JsonOutput; fields: Record<string, unknown> } | undefined,
  fn: (store: IdempotencyStore | undefined) => Promise<T>,
): Promise<T> {
  try {
    if (!spec.mayExist()) return await fn(undefined);
    const store = await spec.open(readOnly ? { readOnly } : {});
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  } catch (caught) {
    const error =
      caught instanceof IdemError || caught instanceof CliError ? caught : new BackendUnavailableError(`the store failed: ${messageOf(caught)}`, caught);
    if (json) printJson(json.command, { ...json.fields, store: spec.display, error: { code: codeOf(error), message: messageOf(error) } });
    throw error;
  }
}

/** Records the store could not read: named in the output, never hidden, and the command exits 74 after the rest. */
type Corrupt = CorruptEntry[];

async function* allRecords(store: IdempotencyStore | undefined, filter: ListOptions, corrupt: Corrupt): AsyncGenerator<IdemRecord> {
  if (!store) return;
  let cursor: string | undefined;
  // Bounded by the store's size: every page advances the cursor or ends the scan.
  do {
    const page = await store.list({ ...filter, limit: 1000, ...(cursor !== undefined ? { cursor } : {}) });
    yield* page.records;
    corrupt.push(...(page.corrupt ?? []));
    cursor = page.cursor;
  } while (cursor !== undefined);
}

const iso = (ms: number | undefined) => isoTime(ms) ?? '-';

export async function statusCommand(argv: string[], env: Env): Promise<number> {
  const { values, positionals } = parseFlags('status', argv, { store: { type: 'string', short: 's' }, json: { type: 'boolean' } });
  if (values.help) return help('status');
  if (positionals.length > 1) throw usage(`status: one key only, got ${positionals.length}`);
  const key = keyOf('status', positionals[0], env);
  const spec = await storeOf(values.store, env);
  return withStore(spec, true, values.json ? { command: 'status', fields: { key, found: null, record: null } } : undefined, async (store) => {
    const record = await store?.get(key);
    const now = store?.clock() ?? Date.now();
    if (values.json)
      printJson('status', { key, store: spec.display, found: record !== undefined, record: record ? recordJson(record, now) : null, error: null });
    else if (!record) info(`no record of ${quote(key)} in ${clean(spec.display)}`, { event: 'status', key });
    else {
      const rows: [string, string][] = [
        ['key', record.key],
        ['status', paint(1, toneOf(record.status), record.status)],
        ['run_id', record.runId],
        ['fence', String(record.fence)],
        ['attempt', String(record.attempt)],
        ['claimed_at', iso(record.claimedAt)],
      ];
      if (record.status === 'in_flight') {
        const dead = isLeaseDead(record, now);
        rows.push(['lease_expires_at', `${iso(record.leaseExpiresAt)}${dead ? paint(1, 'bad', ' (dead: the next run adopts it)') : ''}`]);
      }
      if (record.completedAt !== undefined) rows.push(['completed_at', iso(record.completedAt)]);
      if (record.expiresAt !== undefined) rows.push(['expires_at', iso(record.expiresAt)]);
      const holder = holderText(record);
      if (holder !== undefined) rows.push(['holder', holder]);
      const labels = labelsText(record);
      if (labels !== undefined) rows.push(['labels', labels]);
      if (record.fingerprint !== undefined) rows.push(['fingerprint', record.fingerprint]);
      if (record.error !== undefined) rows.push(['error', record.error]);
      if (record.result !== undefined) rows.push(['result', JSON.stringify(record.result)]);
      // Stored text is escaped before it is painted: a key or error must not drive the terminal.
      for (const [name, value] of rows) out(`${name.padEnd(17)}${name === 'status' || name === 'lease_expires_at' ? value : clean(value)}`);
    }
    return record ? EXIT.OK : EXIT.NEGATIVE;
  });
}

function line(record: IdemRecord, now: number): string {
  const when =
    record.status === 'in_flight' ? `lease ${iso(record.leaseExpiresAt)}${isLeaseDead(record, now) ? ' DEAD' : ''}` : `done ${iso(record.completedAt)}`;
  const who = record.holder ? [clean(`${record.holder.host}:${record.holder.pid}`)] : [];
  const labels = labelsText(record);
  return [
    paint(1, toneOf(record.status), record.status.padEnd(9)),
    `#${record.attempt}`.padEnd(4),
    clean(record.runId),
    when,
    ...who,
    quote(record.key),
    ...(labels ? [clean(labels)] : []),
  ].join('  ');
}

function tellCorrupt(corrupt: Corrupt): void {
  for (const { name, reason } of corrupt)
    out(
      `${paint(1, 'bad', 'corrupt'.padEnd(9))}  ${clean(name)}  ${clean(reason)} (left untouched: idem never overwrites it; inspect it with the backend's own tools)`,
    );
}

export async function listCommand(argv: string[], env: Env): Promise<number> {
  const { values, positionals } = parseFlags('list', argv, {
    store: { type: 'string', short: 's' },
    status: { type: 'string' },
    label: { type: 'string', multiple: true },
    'older-than': { type: 'string' },
    host: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) return help('list');
  noPositionals('list', positionals);
  const status = values.status === undefined ? undefined : oneOf('status', values.status, ['in_flight', 'succeeded', 'failed'], 'in_flight');
  const labels = labelsOf(values.label);
  const olderThan = values['older-than'] === undefined ? undefined : duration('older-than', values['older-than'], '0');
  if (values.host === '') throw usage('--host must name a host');
  const spec = await storeOf(values.store, env);
  return withStore(spec, true, values.json ? { command: 'list', fields: { count: null, records: null, corrupt: null } } : undefined, async (store) => {
    const now = store?.clock() ?? Date.now();
    const records: RecordJson[] = [];
    const corrupt: Corrupt = [];
    const filter: ListOptions = {
      ...(status ? { status } : {}),
      ...(labels ? { labels } : {}),
      // Claimed more than this long ago, by this process's clock (a server-clock store stamps claims with its own).
      ...(olderThan !== undefined ? { claimedBefore: Math.max(0, now - olderThan) } : {}),
      ...(values.host !== undefined ? { holderHost: values.host } : {}),
    };
    for await (const record of allRecords(store, filter, corrupt)) {
      if (values.json) records.push(recordJson(record, now));
      else out(line(record, now));
    }
    if (values.json) printJson('list', { store: spec.display, count: records.length, records, corrupt, error: null });
    else tellCorrupt(corrupt);
    return corrupt.length > 0 ? EXIT.CORRUPT : EXIT.OK;
  });
}

export async function checkCommand(argv: string[], env: Env): Promise<number> {
  const { values, positionals } = parseFlags('check', argv, {
    store: { type: 'string', short: 's' },
    grace: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) return help('check');
  noPositionals('check', positionals);
  const graceMs = values.grace === undefined ? 0 : duration('grace', values.grace, '0');
  const spec = await storeOf(values.store, env);
  return withStore(
    spec,
    true,
    values.json ? { command: 'check', fields: { ok: false, in_flight: null, dead: null, corrupt: null } } : undefined,
    async (store) => {
      const now = store?.clock() ?? Date.now();
      let inFlight = 0;
      const dead: IdemRecord[] = [];
      const corrupt: Corrupt = [];
      for await (const record of allRecords(store, { status: 'in_flight' }, corrupt)) {
        inFlight++;
        if (isLeaseDead(record, now - graceMs)) dead.push(record); // dead for at least the grace period
      }
      if (values.json)
        printJson('check', {
          store: spec.display,
          ok: dead.length === 0,
          in_flight: inFlight,
          dead: dead.map((r) => recordJson(r, now)),
          corrupt,
          error: null,
        });
      else {
        for (const record of dead) out(line(record, now));
        info(
          dead.length === 0
            ? `${paint(2, 'ok', 'ok')}: ${inFlight} in flight, no dead lease`
            : `${paint(2, 'bad', `${dead.length} dead lease${dead.length === 1 ? '' : 's'}`)} of ${inFlight} in flight (crashed runs; the next run of each key adopts it, idem sweep removes them)`,
          { event: 'checked' },
          dead.length === 0 ? 'info' : 'warn',
        );
      }
      if (!values.json) tellCorrupt(corrupt);
      return corrupt.length > 0 ? EXIT.CORRUPT : dead.length === 0 ? EXIT.OK : EXIT.NEGATIVE;
    },
  );
}

export async function sweepCommand(argv: string[], env: Env): Promise<number> {
  const { values, positionals } = parseFlags('sweep', argv, { store: { type: 'string', short: 's' }, json: { type: 'boolean' } });
  if (values.help) return help('sweep');
  noPositionals('sweep', positionals);
  const spec = await storeOf(values.store, env);
  return withStore(
    spec,
    false,
    values.json ? { command: 'sweep', fields: { expired: null, dead_leases: null, native_expiry: null } } : undefined,
    async (store) => {
      const counts = (await store?.sweep()) ?? { expired: 0, deadLeases: 0 };
      const native = store?.capabilities.nativeExpiry ?? false;
      // Such a backend's sweep does no I/O: one read proves the store is reachable (else exit 69, not 0).
      if (store && native) await store.get('idem:sweep-probe');
      if (values.json) printJson('sweep', { store: spec.display, expired: counts.expired, dead_leases: counts.deadLeases, native_expiry: native, error: null });
      else
        info(
          native ? 'nothing to do: this backend expires records itself' : `removed ${counts.expired} expired record(s) and ${counts.deadLeases} dead lease(s)`,
          { event: 'swept' },
        );
      return EXIT.OK;
    },
  );
}

export async function releaseCommand(argv: string[], env: Env): Promise<number> {
  const { values, positionals } = parseFlags('release', argv, {
    store: { type: 'string', short: 's' },
    force: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  if (values.help) return help('release');
  if (positionals.length > 1) throw usage(`release: one key only, got ${positionals.length}`);
  const key = keyOf('release', positionals[0], env);
  const spec = await storeOf(values.store, env);
  if (!values.force) throw usage('release: --force is required: it fences out the current owner and lets the next run execute the key again');
  return withStore(spec, false, values.json ? { command: 'release', fields: { key, released: false, previous: null } } : undefined, async (store) => {
    const before = await store?.get(key);
    if (store && before) {
      // A forced claim fences the owner out (its complete/fail gets LEASE_LOST); releasing it frees the key.
      const claimed = await store.claim(key, { force: true, runId: `idem-release-${crypto.randomUUID()}` });
      if (claimed.outcome === 'acquired' || claimed.outcome === 'adopted') await store.release(claimed.lease);
    }
    if (values.json)
      printJson('release', { key, store: spec.display, released: before !== undefined, previous: before ? recordJson(before, Date.now()) : null, error: null });
    else
      info(
        before
          ? `released ${quote(key)} (was ${before.status}, run ${clean(before.runId)}); the next run executes it`
          : `no record of ${quote(key)}: nothing to release`,
        { event: 'released', key, ...(before ? { holder_run_id: before.runId } : {}) },
      );
    return EXIT.OK;
  });
}

export async function keyCommand(argv: string[], env: Env): Promise<number> {
  const { values, positionals } = parseFlags('key', argv, {
    param: { type: 'string', short: 'p', multiple: true },
    namespace: { type: 'string', short: 'n' },
    json: { type: 'boolean' },
  });
  if (values.help) return help('key');
  if (positionals.length !== 1) throw usage(`key: give exactly one NAME, got ${positionals.length} (see idem key --help)`);
  // A null-prototype map: `--param __proto__=a` is a parameter like any other, not a prototype change.
  // A name given twice is a usage error (not last-wins, not a list): the key must not depend on order.
  const params: Record<string, string> = Object.create(null);
  for (const pair of values.param ?? []) {
    const at = pair.indexOf('=');
    if (at < 1) throw usage(`key: --param must be k=v, got ${JSON.stringify(pair)}`);
    const name = pair.slice(0, at);
    if (Object.hasOwn(params, name)) throw usage(`key: --param ${JSON.stringify(name)} given twice`);
    params[name] = exactText(`--param ${JSON.stringify(name)}`, pair.slice(at + 1));
    exactText('a --param name', name);
  }
  // --namespace > IDEM_NAMESPACE > idem.toml's namespace > "default".
  const ns = (await loadIdemConfig({ env, flags: { namespace: values.namespace } })).namespace;
  const namespace =
    ns.source.from === 'flag'
      ? exactText('--namespace', ns.value)
      : ns.source.from === 'env'
        ? exactText('IDEM_NAMESPACE', ns.value, 'IDEM_NAMESPACE')
        : ns.value;
  const key = deriveKey(namespace, exactText('NAME', positionals[0]!), params);
  if (values.json) printJson('key', { key, namespace, name: positionals[0], params });
  else out(key);
  return EXIT.OK;
}

const help = printHelp;

export async function configCommand(argv: string[], env: Env): Promise<number> {
  const { values, positionals } = parseFlags('config', argv, {
    store: { type: 'string', short: 's' },
    namespace: { type: 'string', short: 'n' },
    lease: { type: 'string' },
    retention: { type: 'string' },
    'dedup-on': { type: 'string' },
    'on-in-flight': { type: 'string' },
    label: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  });
  if (values.help) return help('config');
  noPositionals('config', positionals);
  const config = await loadIdemConfig({
    env,
    flags: {
      store: values.store,
      namespace: values.namespace,
      lease: values.lease,
      retention: values.retention,
      dedupOn: values['dedup-on'],
      onInFlight: values['on-in-flight'],
      labels: labelsOf(values.label),
    },
  });
  // The store URL is parsed as a run would (no I/O): a bad one fails here too.
  await storeSpecOf(config);
  // Only the redacted URL is ever shown: a password (or a ${VAR} expanded into it) never is.
  const rows: [string, { value: string; source: ConfigSource }][] = [
    ['store', config.store],
    ['namespace', config.namespace],
    ['lease', config.lease],
    ['retention', config.retention],
    ['dedup_on', config.dedupOn],
    ['on_in_flight', config.onInFlight],
    ...Object.entries(config.labels).map(([name, s]) => [`labels.${name}`, s] as [string, Setting<string>]),
  ];
  if (values.json) {
    const { store, lease, retention, dedupOn, onInFlight, namespace, labels } = config;
    printJson('config', {
      file: config.file ?? null,
      store: { value: store.value, source: store.source },
      namespace,
      lease,
      retention,
      dedup_on: dedupOn,
      on_in_flight: onInFlight,
      labels,
    });
    return EXIT.OK;
  }
  out(`${'file'.padEnd(14)}${config.file === undefined ? '(none: no idem.toml from here up to the repository root)' : clean(config.file)}`);
  const width = Math.max(14, ...rows.map(([name]) => name.length + 2));
  const valueWidth = Math.max(...rows.map(([, s]) => clean(s.value).length)) + 2;
  for (const [name, s] of rows) out(`${clean(name).padEnd(width)}${clean(s.value).padEnd(valueWidth)}${clean(sourceText(s.source))}`);
  return EXIT.OK;
}
