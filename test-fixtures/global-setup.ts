// Vitest global setup: one temporary root per run, removed afterwards, so
// the many small stores and working directories tests make do not pile up.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'idem-test-run-'));
  // Test workers (and the processes they spawn) inherit the environment.
  process.env.IDEM_TEST_TMP = root;
  return () => rmSync(root, { recursive: true, force: true });
}
