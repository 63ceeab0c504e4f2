// @idem/core/url with the real adapters' /url modules (the CLI's dev
// dependencies), as an embedder uses it: grammar, limits and secrets.
import { join } from 'node:path';
import { openStoreUrl, parseStoreUrl, type StoreUrlOptions } from '@idem/core/url';
import { SECRET, SECRET_URLS, tempDir, USER } from '@idem/test-fixtures';
import { parse as parseS3 } from '@idem/s3/url';
import { parse as parseValkey } from '@idem/valkey/url';
import { describe, expect, it } from 'vitest';
import { DEFAULT_STORE, parseStoreUrl as cliParse } from '../src/store-url.js';

// Core cannot see the adapters from its own folder in this workspace; the CLI's test folder can.
const from: StoreUrlOptions = { importer: (specifier) => import(specifier) };
const code = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: { code?: string }) => e.code,
  );

describe('parseStoreUrl dispatches to each adapter', () => {
  it('lmdb: relative to cwd; a missing directory may not exist', async () => {
    const cwd = tempDir('idem-url-');
    const p = await cliParse(DEFAULT_STORE, cwd);
    expect(p).toMatchObject({ scheme: 'lmdb', package: '@idem/lmdb', display: `lmdb://${join(cwd, '.idem')}` });
    expect(p.mayExist()).toBe(false);
    expect((await parseStoreUrl('lmdb:///tmp/x?durability=commit', from)).display).toBe('lmdb:///tmp/x?durability=commit');
    expect((await parseStoreUrl('lmdb:///tmp/x?durability=commit&verify=true', from)).display).toBe('lmdb:///tmp/x?durability=commit&verify=true');
    expect(await code(parseStoreUrl('lmdb:///tmp/x?verify=maybe', from))).toBe('INVALID_STORE_URL');
    expect(await code(parseStoreUrl('lmdb://host/x', from))).toBe('INVALID_STORE_URL');
  });

  it('valkey: the db index form is checked before any I/O; the server judges its range', () => {
    expect(parseValkey('redis://h:6379/16').db).toBe(16);
    expect(parseValkey('redis://h').db).toBe(0);
    for (const bad of [
      'redis://h/01',
      'redis://h/-1',
      'redis://h/1.5',
      'redis://h/2147483648',
      'redis://h/99999999999',
      'redis://h/1/2',
      'redis://h/3?cluster=true',
    ]) {
      expect(() => parseValkey(bad), bad).toThrow(expect.objectContaining({ code: 'INVALID_STORE_URL' }));
    }
    expect(parseValkey('valkeys://u:p@h:1?cluster=true&nodes=h2:2,h3:3&prefix=x:')).toEqual({
      url: 'valkeys://u:p@h:1?cluster=true&nodes=h2:2,h3:3&prefix=x:',
      server: 'valkeys://u:p@h:1',
      db: 0,
      cluster: ['valkeys://u:p@h:1', 'h2:2', 'h3:3'],
      prefix: 'x:',
    });
  });

  it("s3: the adapter's limits, checked by the one rule the adapter also applies (bucket name, prefix of at most 512 UTF-8 bytes)", async () => {
    expect(parseS3('s3://bucket/jobs')).toEqual({ bucket: 'bucket', prefix: 'jobs/' });
    // Three-byte characters count three: 170 of them and the "/" make 511 bytes; 171 make 514.
    const wide = '€'.repeat(170);
    expect(parseS3(`s3://bucket/${encodeURIComponent(wide)}`).prefix).toBe(`${wide}/`);
    expect(() => parseS3(`s3://bucket/${encodeURIComponent('€'.repeat(171))}`)).toThrow(/at most 512 bytes/);
    expect(() => parseS3(`s3://bucket/${encodeURIComponent('é'.repeat(150) + '€'.repeat(150))}`)).toThrow(/at most 512 bytes/);
    expect(() => parseS3(`s3://bucket/${'a'.repeat(512)}`)).toThrow(/at most 512 bytes/);
    expect(parseS3(`s3://bucket/${'a'.repeat(511)}`).prefix).toHaveLength(512);
    expect(() => parseS3('s3://bucket//x')).toThrow(/not starting with/);
    for (const control of ['a%0Ab', 'a%09b', 'a%00b', 'a%7Fb']) expect(() => parseS3(`s3://bucket/${control}`), control).toThrow(/control characters/);
    for (const bucket of ['Bad_Bucket', 'bucket..x', 'bucket.-x', 'bucket-.x', '192.168.1.1', 'ab', `${'a'.repeat(64)}`]) {
      expect(() => parseS3(`s3://${bucket}/x`), bucket).toThrow(/not an S3 bucket name/);
    }
    expect(parseS3('s3://my.bucket-1/x').bucket).toBe('my.bucket-1');
    expect(await code(parseStoreUrl('s3://bucket..x/p', from))).toBe('INVALID_STORE_URL');
    expect(await code(parseStoreUrl('s3://bucket/x?endpoint=ftp://h', from))).toBe('INVALID_STORE_URL');
  });

  it('gs: bucket rule, no parameters', async () => {
    expect((await parseStoreUrl('gs://my_bucket/p', from)).display).toBe('gs://my_bucket/p');
    expect(await code(parseStoreUrl('gs://b/x?project=p', from))).toBe('INVALID_STORE_URL');
  });

  it('an unknown scheme names the package that would serve it', async () => {
    await expect(parseStoreUrl('memory:x', from)).rejects.toThrow(/@idem\/memory/);
  });
});

describe('no error of parseStoreUrl/openStoreUrl shows a secret', () => {
  it.each(SECRET_URLS)('%s', async (url) => {
    // A Valkey store connects lazily: a URL that parses opens, and says nothing.
    const error = (await openStoreUrl(url, from).then(
      async (store) => {
        await store.close();
        return undefined;
      },
      (e: unknown) => e,
    )) as (Error & { code?: string }) | undefined;
    if (error === undefined) return;
    expect(error.code).toMatch(/^(INVALID_STORE_URL|BACKEND_UNAVAILABLE)$/);
    const text = `${error.message}\n${error.stack}`.toLowerCase();
    expect(text).not.toContain(SECRET.toLowerCase());
    expect(text).not.toContain(USER.toLowerCase());
  });
});
