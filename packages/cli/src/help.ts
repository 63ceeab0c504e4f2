const STORE = `  -s, --store URL     where claims live (env IDEM_STORE; default lmdb:.idem, an embedded
                      store in ./.idem). lmdb:///abs/path, lmdb:rel/path,
                      redis://[user:pass@]host:port[/db][?prefix=P], rediss://, valkey://,
                      redis://seed:7000?cluster=true[&nodes=h:p,h:p], s3://bucket/prefix,
                      gs://bucket/prefix`;

const EXITS = `Exit codes: the command's own code when it ran (128+N if killed by signal N);
  0 skipped (or --skip-exit-code); 64 bad usage, key, duration or store URL;
  65 KEY_REUSE_MISMATCH; 69 BACKEND_UNAVAILABLE (retry later); 70 internal;
  74 CORRUPT_RECORD; 75 IN_FLIGHT (--on-in-flight fail, or wait timed out);
  76 LEASE_LOST (another run took the key over; this run's outcome was not recorded);
  78 BACKEND_REFUSED, UNSAFE_BACKEND or ADAPTER_MISSING (fix the setup; a retry cannot help);
  126 command not executable; 127 command not found.`;

export const HELP = {
  main: `idem: run a command at most once per key

Usage: idem <command> [flags]

Commands:
  run      claim a key, run a command, record the outcome
  status   show the record of a key
  list     list records (operators: stuck claims, recent failures)
  check    exit 1 when an in-flight claim has a dead lease (monitoring)
  sweep    remove expired records and dead leases
  release  fence out the owner of a key and free it (--force)
  key      print the deterministic key of NAME and --param k=v
  config   print the effective settings and where each came from

Run 'idem <command> --help' for its flags. Errors are one line on stderr:
'idem: CODE: message'. NO_COLOR disables colour. --log-format json (any
command; env IDEM_LOG_FORMAT) writes idem's stderr lines as JSON objects.
Settings: flag > environment > idem.toml (found from the working directory up
to the repository root) > default; see 'idem config --help'.`,

  run: `Usage: idem run --key K [flags] -- CMD ARGS...

Claims K. If this run gets it (acquired, or adopted from a crashed run), runs
CMD with inherited stdio, renews the lease while it runs, and records
succeeded (exit 0) or failed (anything else). If K already succeeded, CMD is
not run (skipped_idempotent); if another run holds it, skipped_in_flight.
Human output goes to stderr; --json prints one JSON object on stdout.

  -k, --key K               the idempotency key (env IDEM_KEY)
${STORE}
      --lease DUR           lease (at least 1s), renewed every third of it while CMD runs (5m);
                            a crashed run is taken over about one lease later
      --retention DUR       how long outcomes are remembered, at least --lease (30d)
      --dedup-on WHEN       success: a failure may be retried (default);
                            any: a failure is final too
      --fingerprint STR     fingerprint of the inputs: the same key with another
                            fingerprint is KEY_REUSE_MISMATCH (exit 65)
      --label NAME=VALUE    tag the record (repeatable); idem list --label finds it.
                            Without one, a run taking over a record keeps its labels.
                            Stored in clear: no secrets
      --force               take the key whatever its state (fences out the owner)
      --on-in-flight MODE   skip (default), wait (until the owner finishes, then
                            reuse or adopt), fail (exit 75)
      --wait-timeout DUR    give up waiting after this long (1h)
      --skip-exit-code N    exit code when CMD is skipped (0)
      --json                print the report as JSON on stdout
  -q, --quiet               no human output (errors still print)
      --log-format FORMAT   text (default) or json: each stderr line one JSON
                            object with key, run_id, fence, outcome, status
                            (env IDEM_LOG_FORMAT)
      --otel                export the run's spans over OTLP/HTTP (env IDEM_OTEL=1);
                            OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME... apply;
                            continues the trace in TRACEPARENT and passes CMD its own
  -h, --help

Durations: 500ms, 30s, 5m, 2h, 30d.
--store, --lease, --retention, --dedup-on, --on-in-flight and --label may also come
from the environment or idem.toml: see idem config --help.
The command gets IDEM_RUN_ID, IDEM_FENCE (larger for every new owner: pass it
downstream to fence writes) and IDEM_ATTEMPT in its environment.
Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to CMD. If CMD then exits
non-zero the claim is released (no outcome: the next run executes);
if it exits 0 the run succeeded. A CMD killed by a signal idem did not
forward (OOM killer, crash) is recorded as failed.
If the lease is lost (another run took over), CMD gets SIGTERM (SIGKILL 10s
later) and idem exits 76.

${EXITS}`,

  status: `Usage: idem status KEY [--store URL] [--json]

Prints the record of KEY, with who claimed it (host, pid, program, idem version)
and its labels. Exit 0 when there is one, 1 when there is none.

${STORE}
      --json            one JSON object: { key, store, found, record }`,

  list: `Usage: idem list [--status S] [--label NAME=VALUE]... [--older-than DUR] [--host H] [--store URL] [--json]

Lists live records (expired ones count as absent), in the backend's order,
with who claimed each (host:pid) and its labels.

${STORE}
      --status S        only records with this status: in_flight, succeeded, failed
      --label N=V       only records with this label (repeatable: all must match)
      --older-than DUR  only records claimed longer ago than DUR (e.g. 2h)
      --host H          only records claimed on host H
      --json            one JSON object: { store, count, records }`,

  check: `Usage: idem check [--grace DUR] [--store URL] [--json]

For monitoring: exit 1 when an in-flight claim's lease has been dead for
longer than --grace (0): its run crashed or hangs without renewing.
The next run of such a key adopts it; idem sweep removes it.

${STORE}
      --grace DUR       tolerated lateness, e.g. for clock skew
      --json            one JSON object: { store, ok, in_flight, dead }`,

  sweep: `Usage: idem sweep [--store URL] [--json]

Removes records past retention and in-flight records with a dead lease.
A no-op on Valkey/Redis, which expires records itself.

${STORE}
      --json            one JSON object: { store, expired, dead_leases, native_expiry }`,

  release: `Usage: idem release KEY --force [--store URL] [--json]

Takes KEY over (a larger fence: its current owner can no longer complete,
fail or renew) and releases it, so the next 'idem run' executes the command
again, whatever state it was in (in flight, succeeded or failed).

      --force           required: this overrides the store's decision
${STORE}`,

  key: `Usage: idem key NAME [--param k=v ...] [--namespace NS] [--json]

Prints the deterministic key of (namespace, NAME, params): the same
arguments always give the same key, whatever the order of the params.
Use it as: idem run --key "$(idem key load-day --param day=2024-05-01)" -- ...

  -p, --param k=v       a parameter (repeatable; values are strings)
  -n, --namespace NS    namespace (env IDEM_NAMESPACE; default "default")
      --json            one JSON object: { key, namespace, name, params }`,

  config: `Usage: idem config [--json] [the settings' flags]

Prints the effective settings and where each came from: a flag, the
environment, idem.toml (path:line) or the default. Secrets in the store URL
are shown as ***. Checks idem.toml and the store URL without opening the store.

Each setting, by precedence: flag > environment > idem.toml > default.
  idem.toml key     flag              environment         default
  store             --store           IDEM_STORE          lmdb:.idem
  namespace         --namespace       IDEM_NAMESPACE      default      (idem key)
  lease             --lease           IDEM_LEASE          5m
  retention         --retention       IDEM_RETENTION      30d
  dedup_on          --dedup-on        IDEM_DEDUP_ON       success
  on_in_flight      --on-in-flight    IDEM_ON_IN_FLIGHT   skip
  [labels] name=v   --label name=v    -                   none         (a flag wins per name)

idem.toml is read from the working directory, then each parent up to the
repository root (a directory holding .git) or /. Example:
  store = "redis://:\${REDIS_PASSWORD}@cache.internal:6379"
  lease = "10m"
  [labels]
  team = "data"
The store may reference environment variables as \${NAME} (expanded when
used; a missing or empty one is an error); a relative lmdb: path is relative
to the file's directory. An unknown key or a bad value exits 64.

  (the flags above, as on idem run and idem key)
      --json            one JSON object: { file, store, namespace, lease, retention,
                        dedup_on, on_in_flight, labels }, each { value, source }`,
} as const;

export type Topic = keyof typeof HELP;
