// What tests share across packages. Loaded by vitest (TypeScript as is).
import { existsSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The bad-input corpus is published with @idem/conformance so that authors of
// other adapters test against the same values; re-exported here for the CLI's tests.
export { BAD_DURATIONS, BAD_KEYS, BAD_RESULTS, GOOD_KEYS } from '@idem/conformance';

export const inCI = process.env.CI === 'true' || process.env.CI === '1';

/** A container runtime testcontainers could use. */
export function hasContainerRuntime(): boolean {
  return Boolean(process.env.DOCKER_HOST) || existsSync('/var/run/docker.sock');
}

export interface ServerSpec {
  /** Human name, for messages. */
  label: string;
  /** Env variables that locate a running server; all must be set. */
  env: readonly string[];
  /** Starts the server in a container and returns the same variables (needs a container runtime). */
  container?: () => Promise<Record<string, string>>;
}

/**
 * Finds a real server for a backend suite: from env variables (set by
 * scripts/servers.sh), else from testcontainers when a container runtime is
 * there, else undefined with a loud message. Under CI=true a missing server
 * throws, so a backend suite can never pass by skipping.
 */
export async function findServer(spec: ServerSpec): Promise<Record<string, string> | undefined> {
  const values = Object.fromEntries(spec.env.map((name) => [name, process.env[name]]));
  if (spec.env.every((name) => values[name])) return values as Record<string, string>;
  if (spec.container && hasContainerRuntime()) return spec.container();
  const why = `${spec.label}: no server (set ${spec.env.join(', ')}, run scripts/servers.sh start, or provide a container runtime)`;
  if (inCI) throw new Error(`CI=true and ${why}`);
  console.warn(`\n!!! SKIPPING the ${why} !!!\n`);
  return undefined;
}

/** A fresh temporary directory, under the run's root (removed when the run ends) when vitest set one. */
export function tempDir(prefix = 'idem-test-'): string {
  return mkdtempSync(join(process.env.IDEM_TEST_TMP ?? tmpdir(), prefix));
}

export { SECRET, SECRET_URLS, USER } from './secret-urls.js';
