#!/usr/bin/env node
// Runs every ts/js/sh code block of every README.md in the repository, as
// written, against the real servers of scripts/servers.sh (their variables
// must be in the environment: scripts/test.sh sets them).
//
//   node scripts/readme-blocks.mjs            run them all
//   node scripts/readme-blocks.mjs --list     only list what would run
//
// A block that cannot run says why, visibly, in an HTML comment on the line
// before its fence:   <!-- not run: installs from the public registry -->
// ts/js blocks run under Node (type stripping) in a fresh directory each,
// with every workspace package and SDK importable, and are typechecked
// (strict) first; sh blocks run with bash from the repository root. A block
// passes when it exits 0; one still running after BLOCK_LIMIT_MS is reported
// as hanging (an open handle: a store or client never closed), not as slow.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const BLOCK_LIMIT_MS = Number(process.env.IDEM_README_BLOCK_LIMIT_MS) || 120_000;
const RUN = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js', mjs: 'js', sh: 'sh', bash: 'sh', shell: 'sh' };

/** Every fenced block of a markdown file, with the `not run` reason written above it, if any. */
export function extractBlocks(file, text) {
  const lines = text.split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,})\s*([\w-]*)/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, lang] = open;
    const body = [];
    let j = i + 1;
    while (j < lines.length && !lines[j].trimStart().startsWith(fence)) body.push(lines[j++].slice(indent.length));
    let k = i - 1;
    while (k >= 0 && lines[k].trim() === '') k--;
    const marker = k >= 0 ? /<!--\s*not run:\s*(.*?)\s*-->/.exec(lines[k]) : null;
    blocks.push({ file, line: i + 1, lang: lang.toLowerCase(), kind: RUN[lang.toLowerCase()], code: `${body.join('\n')}\n`, skip: marker?.[1] });
    i = j;
  }
  return blocks;
}

const readmes = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*README.md', 'README.md'], { cwd: repo, encoding: 'utf8' })
  .split('\n')
  .filter((f) => f.endsWith('README.md') && !f.includes('node_modules/'));
const blocks = readmes.flatMap((f) => extractBlocks(f, readFileSync(join(repo, f), 'utf8'))).filter((b) => b.kind !== undefined);

let failed = 0;
const say = (line) => console.log(`readme-blocks: ${line}`);
for (const b of blocks.filter((b) => b.skip !== undefined && b.skip.length === 0)) {
  say(`FAIL ${b.file}:${b.line}: a "not run" marker needs a reason`);
  failed++;
}
if (process.argv.includes('--list')) {
  for (const b of blocks) say(`${b.skip !== undefined ? `not run (${b.skip})` : `run ${b.kind}`}  ${b.file}:${b.line}`);
  process.exit(failed ? 1 : 0);
}

// --- Environment: the test servers under the names the SDKs and blocks read. ---
const need = [
  'IDEM_TEST_REDIS_URL',
  'IDEM_TEST_S3_ENDPOINT',
  'IDEM_TEST_S3_ACCESS_KEY',
  'IDEM_TEST_S3_SECRET_KEY',
  'STORAGE_EMULATOR_HOST',
  'IDEM_TEST_POSTGRES_URL',
];
const missing = need.filter((v) => !process.env[v]);
if (missing.length) {
  say(`FAIL the test servers are not configured (${missing.join(', ')}): run through scripts/test.sh, or eval "$(bash scripts/servers.sh start)" first`);
  process.exit(1);
}
const BUCKET = 'my-bucket'; // the bucket name the READMEs use
const gcsProxy = await startGcsPathProxy(process.env.STORAGE_EMULATOR_HOST);
const env = {
  ...process.env,
  REDIS_URL: process.env.IDEM_TEST_REDIS_URL,
  DATABASE_URL: process.env.IDEM_TEST_POSTGRES_URL,
  AWS_ACCESS_KEY_ID: process.env.IDEM_TEST_S3_ACCESS_KEY,
  AWS_SECRET_ACCESS_KEY: process.env.IDEM_TEST_S3_SECRET_KEY,
  AWS_REGION: process.env.IDEM_TEST_S3_REGION ?? 'us-east-1',
  AWS_ENDPOINT_URL_S3: process.env.IDEM_TEST_S3_ENDPOINT,
  STORAGE_EMULATOR_HOST: gcsProxy.url,
  GOOGLE_CLOUD_PROJECT: 'idem',
};

// --- A directory where every workspace package and every SDK they use is importable. ---
const sandbox = mkdtempSync(join(tmpdir(), 'idem-readme-'));
const modules = join(sandbox, 'node_modules');
linkModules(modules);
writeFileSync(join(sandbox, 'package.json'), JSON.stringify({ name: 'readme-blocks', private: true, type: 'module' }));
await createBuckets();

const code = blocks.filter((b) => b.skip === undefined && (b.kind === 'ts' || b.kind === 'js'));
const files = code.map((b, i) => {
  const dir = join(sandbox, `block-${i}`);
  mkdirSync(dir);
  const file = join(dir, `block.${b.kind === 'ts' ? 'mts' : 'mjs'}`);
  writeFileSync(file, b.code);
  return file;
});
// Typecheck the ts blocks together (each is its own module): a README must not drift from the API.
const tsBlocks = files.filter((f) => f.endsWith('.mts'));
if (tsBlocks.length) {
  writeFileSync(
    join(sandbox, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { target: 'ES2024', module: 'nodenext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], moduleDetection: 'force' },
      files: tsBlocks,
    }),
  );
  const tsc = await run(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', sandbox], sandbox);
  if (tsc.code === 0) say(`ok   typecheck of ${tsBlocks.length} ts blocks`);
  else {
    failed++;
    say(`FAIL typecheck of the ts blocks:`);
    const where = new Map(files.map((f, i) => [relative(sandbox, f), `${code[i].file}:${code[i].line}`]));
    console.log(
      tsc.output
        .replace(/block-\d+\/block\.mts/g, (m) => where.get(m) ?? m)
        .trimEnd()
        .replace(/^/gm, '    '),
    );
  }
}

for (const b of blocks) {
  const where = `${b.file}:${b.line} (${b.kind})`;
  if (b.skip !== undefined) {
    say(`skip ${where}: ${b.skip}`);
    continue;
  }
  const i = code.indexOf(b);
  const result = i >= 0 ? await run(process.execPath, [files[i]], dirname(files[i])) : await run('bash', ['-euo', 'pipefail', '-c', b.code], repo);
  if (result.code === 0) say(`ok   ${where}`);
  else {
    failed++;
    say(`FAIL ${where}: ${result.hung ? `still running after ${BLOCK_LIMIT_MS / 1000}s (left a handle open?)` : `exit ${result.code}`}`);
    console.log(result.output.trimEnd().split('\n').slice(-20).join('\n').replace(/^/gm, '    '));
  }
}
gcsProxy.close();
rmSync(sandbox, { recursive: true, force: true });
say(`${blocks.filter((b) => b.skip === undefined).length} blocks run, ${blocks.filter((b) => b.skip !== undefined).length} marked not run, ${failed} failed`);
process.exit(failed ? 1 : 0);

function run(cmd, args, cwd) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      process.kill(-child.pid, 'SIGKILL');
    }, BLOCK_LIMIT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: hung ? 1 : code, output, hung });
    });
  });
}

/** node_modules/<name> for each workspace package and each dependency declared by one. */
function linkModules(dir) {
  const link = (name, target) => {
    const at = join(dir, name);
    if (existsSync(at)) return;
    mkdirSync(dirname(at), { recursive: true });
    symlinkSync(target, at);
  };
  const packages = readdirSync(join(repo, 'packages'));
  for (const p of packages) {
    const root = join(repo, 'packages', p);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    link(pkg.name, root);
  }
  for (const p of packages) {
    const root = join(repo, 'packages', p);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.devDependencies, ...pkg.peerDependencies })) {
      const found = join(root, 'node_modules', dep);
      if (!dep.startsWith('@idem/') && existsSync(found)) link(dep, realpathSync(found));
    }
  }
  link('@types/node', realpathSync(join(repo, 'node_modules/@types/node')));
}

/** The READMEs' bucket, in MinIO and in fake-gcs-server (already there is fine). */
async function createBuckets() {
  const { S3Client, CreateBucketCommand } = createRequire(join(sandbox, 'x.js'))('@aws-sdk/client-s3');
  const credentials = { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY };
  const s3 = new S3Client({ region: env.AWS_REGION, endpoint: env.AWS_ENDPOINT_URL_S3, forcePathStyle: true, credentials });
  try {
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  } catch (error) {
    // Already created by an earlier run against the same server.
    if (error.name !== 'BucketAlreadyOwnedByYou' && error.name !== 'BucketAlreadyExists') throw error;
  }
  s3.destroy();
  const gcs = await fetch(`${process.env.STORAGE_EMULATOR_HOST}/storage/v1/b?project=idem`, { method: 'POST', body: JSON.stringify({ name: BUCKET }) });
  if (!gcs.ok && gcs.status !== 409) throw new Error(`creating the GCS bucket: ${gcs.status}`);
}

/**
 * The GCS client takes STORAGE_EMULATOR_HOST as its JSON API base without
 * the /storage/v1 that fake-gcs-server expects (googleapis/nodejs-storage#1314):
 * this proxy adds it, so `new Storage()` in a README reaches the emulator as written.
 */
function startGcsPathProxy(target) {
  const upstream = new URL(target);
  const server = createServer((req, res) => {
    const path = /^\/(storage\/v1|upload|download)\//.test(req.url) ? req.url : `/storage/v1${req.url}`;
    const out = request({ host: upstream.hostname, port: upstream.port, method: req.method, path, headers: { ...req.headers, host: upstream.host } }, (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    });
    out.on('error', (error) => res.destroy(error));
    req.pipe(out);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() })),
  );
}
