// No secret from a store URL ever reaches stdout or stderr of the real
// binary (issue 9, item 4), whatever the URL's shape: the corpus is in
// test-fixtures. URLs that parse point at 127.0.0.1:1, so opening fails fast.
import { SECRET, SECRET_URLS, USER } from '@idem/test-fixtures';
import { describe, expect, it } from 'vitest';
import { idem } from './helpers.js';

/** Credentials for the SDKs' own chains, so that none goes looking for a metadata server. */
const env = {
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
  AWS_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true',
  STORAGE_EMULATOR_HOST: undefined,
};

const leaked = (text: string) => [SECRET, USER].filter((s) => text.toLowerCase().includes(s.toLowerCase()));

describe('store URLs with secrets, valid or malformed', () => {
  it.concurrent.each(SECRET_URLS)('%s: nothing secret on stdout or stderr', async (url) => {
    const run = await idem(['run', '--key', 'k', '--store', url, '--json', '--', 'true'], { env });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/^idem: [A-Z_]+: /m);
    expect(leaked(run.stdout + run.stderr)).toEqual([]);
    // The operator commands parse the same way; a URL that parsed already showed its display above
    // (and a refused connection takes several seconds per command).
    if (run.code !== 64) return;
    const list = await idem(['list', '--store', url, '--json'], { env });
    expect(list.code).toBe(64);
    expect(leaked(list.stdout + list.stderr)).toEqual([]);
  });

  it('the --json report shows the store without its userinfo', async () => {
    const r = await idem(['run', '--key', 'k', '--store', `redis://${USER}:${SECRET}@127.0.0.1:1/3?prefix=p:`, '--json', '--', 'true'], { env });
    expect(r.code).toBe(69);
    expect(r.json).toMatchObject({ status: 'error', store: 'redis://***@127.0.0.1:1/3?prefix=p:', error: { code: 'BACKEND_UNAVAILABLE' } });
  });
});
