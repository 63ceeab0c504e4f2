import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { SECRET, SECRET_URLS, USER } from '../../../test-fixtures/secret-urls.js';
import { IdemError, InvalidStoreUrlError, type IdempotencyStore } from '../src/index.js';
import { openStoreUrl, parseStoreUrl, redactStoreUrl, registerStoreScheme, storeUrlError, storeUrlPackage, type StoreUrlHandler } from '../src/url.js';

const leaks = (text: string) => [SECRET, USER].some((s) => text.toLowerCase().includes(s.toLowerCase()));

describe('redactStoreUrl', () => {
  it.each([
    ['redis://user:pw@host:6379/2?prefix=a:', 'redis://***@host:6379/2?prefix=a:'],
    ['redis://u:p@SECRET@host', 'redis://***@host'],
    ['redis://u:pa/SECRET@host', 'redis://***@host'],
    ['s3://AKIA:abc/SECRET@bucket', 's3://***@bucket'],
    ['redis://h?password=SECRET&prefix=x', 'redis://h?password=***&prefix=x'],
    ['s3://b/p?endpoint=http%3A%2F%2FK%3AS%40h', 's3://b/p?endpoint=***'],
    ['s3://b/p?endpoint=http://127.0.0.1:9000&region=eu-west-1', 's3://b/p?endpoint=http://127.0.0.1:9000&region=eu-west-1'],
    ['redis://u:SECRET', 'redis://***'],
    ['redis://host#SECRET', 'redis://host'],
    ['user:SECRET@host', '***@host'],
    ['lmdb:relative/dir', 'lmdb:relative/dir'],
    ['gs://bucket/jobs/', 'gs://bucket/jobs/'],
  ])('%s → %s', (url, shown) => {
    expect(redactStoreUrl(url)).toBe(shown);
  });

  it.each(SECRET_URLS)('hides the secret of %s', (url) => {
    expect(leaks(redactStoreUrl(url))).toBe(false);
  });

  it('never echoes a secret, even when a handler quotes it', () => {
    const url = `x://u:${SECRET}@h`;
    expect(storeUrlError(url, `bad part ${SECRET}`).message).not.toContain(SECRET);
  });
});

/** A handler written in the test, as an adapter author would: a store of its own is not needed here. */
function testHandler(schemes: string[], opened: string[]): StoreUrlHandler<{ name: string }> {
  return {
    schemes,
    parse(url) {
      const name = url.slice(url.indexOf(':') + 1);
      if (name === '' || name.includes('@')) throw storeUrlError(url, 'write test:NAME');
      return { name };
    },
    redact: (url) => redactStoreUrl(url),
    mayExist: ({ name }) => name !== 'absent',
    async open({ name }) {
      opened.push(name);
      return { name } as unknown as IdempotencyStore;
    },
  };
}

describe('scheme dispatch', () => {
  it('maps built-in schemes to their packages and others by convention', () => {
    expect(storeUrlPackage('lmdb')).toBe('@idem/lmdb');
    for (const s of ['redis', 'rediss', 'valkey', 'valkeys']) expect(storeUrlPackage(s)).toBe('@idem/valkey');
    expect(storeUrlPackage('s3')).toBe('@idem/s3');
    expect(storeUrlPackage('gs')).toBe('@idem/gcs');
    for (const s of ['postgres', 'postgresql']) expect(storeUrlPackage(s)).toBe('@idem/postgres');
    expect(storeUrlPackage('memory')).toBe('@idem/memory');
    expect(storeUrlPackage('memory+shared')).toBe('@idem/memory');
  });

  it('opens a registered scheme with no edits elsewhere', async () => {
    const opened: string[] = [];
    registerStoreScheme('test-reg', () => testHandler(['test-reg'], opened));
    const parsed = await parseStoreUrl('test-reg:jobs');
    expect(parsed).toMatchObject({ scheme: 'test-reg', package: '@idem/test-reg', display: 'test-reg:jobs' });
    expect(parsed.mayExist()).toBe(true);
    expect(await parseStoreUrl('TEST-REG:absent').then((p) => p.mayExist())).toBe(false);
    await openStoreUrl('test-reg:jobs', { leaseMs: 1000 });
    expect(opened).toEqual(['jobs']);
  });

  it('loads @idem/<x>/url through the importer by the x: and x+y: convention', async () => {
    const asked: string[] = [];
    const opened: string[] = [];
    const importer = async (specifier: string) => {
      asked.push(specifier);
      return testHandler(['conv', 'conv+tls'], opened);
    };
    await openStoreUrl('conv+tls:a', { importer });
    expect(asked).toEqual(['@idem/conv/url']);
    expect(opened).toEqual(['a']);
  });

  it('unknown scheme, missing built-in adapter, wrong module: typed errors that name the package', async () => {
    const notFound = async (specifier: string) => {
      throw Object.assign(new Error(`Cannot find package '${specifier.replace(/\/url$/, '')}' imported from here`), { code: 'ERR_MODULE_NOT_FOUND' });
    };
    const unknown = await parseStoreUrl('mysql://db', { importer: notFound }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(InvalidStoreUrlError);
    expect((unknown as Error).message).toContain('@idem/mysql');
    // Core cannot see adapters from its own folder in this workspace: the importer's answer decides.
    const missing = await parseStoreUrl('rediss://h:1', { importer: notFound }).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'ADAPTER_MISSING', install: '@idem/valkey ioredis' });
    expect((missing as Error).message).toContain('npm install @idem/valkey ioredis');
    expect(missing).toBeInstanceOf(IdemError);
    const s3 = await parseStoreUrl('s3://b/p', { importer: notFound }).catch((e: unknown) => e);
    expect((s3 as Error).message).toContain('npm install @idem/s3 @aws-sdk/client-s3');
    const wrong = await parseStoreUrl('odd:x', { importer: async () => ({ nothing: true }) }).catch((e: unknown) => e);
    expect(wrong).toMatchObject({ code: 'INVALID_STORE_URL' });
    const other = await parseStoreUrl('odd:x', { importer: async () => testHandler(['even'], []) }).catch((e: unknown) => e);
    expect((other as Error).message).toContain('does not serve the scheme "odd"');
    for (const bad of ['', '   ', 'db']) await expect(parseStoreUrl(bad)).rejects.toMatchObject({ code: 'INVALID_STORE_URL' });
  });

  it.each(SECRET_URLS)('no error of parseStoreUrl/openStoreUrl shows the secret of %s (unknown schemes, missing adapters)', async (url) => {
    const notFound = async (specifier: string) => {
      throw Object.assign(new Error(`Cannot find package '${specifier.replace(/\/url$/, '')}'`), { code: 'ERR_MODULE_NOT_FOUND' });
    };
    const error = await openStoreUrl(url, { importer: notFound }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(IdemError);
    expect(leaks(`${(error as Error).message}\n${(error as Error).stack}`)).toBe(false);
  });
});

describe('@idem/core/url', () => {
  it('is a light subpath: importing it loads no store, runner or tiered-store code (only its URL modules, errors and validation)', () => {
    const hook = `import{registerHooks}from'node:module';registerHooks({load(u,c,n){if(u.includes('/core/'))process.stdout.write(u.split('/').pop()+'\\n');return n(u,c)}})`;
    const r = spawnSync(
      process.execPath,
      ['--import', `data:text/javascript,${encodeURIComponent(hook)}`, '--input-type=module', '-e', "await import('@idem/core/url')"],
      {
        cwd: new URL('..', import.meta.url),
        encoding: 'utf8',
      },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n').filter(Boolean).sort()).toEqual(['errors.js', 'redact.js', 'url-tiered.js', 'url.js', 'validate.js']);
  });
});
