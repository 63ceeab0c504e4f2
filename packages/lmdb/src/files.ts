// The store's files, checked before LMDB maps them: an unusable directory,
// a damaged or foreign data file and a half-made new store are refused here
// with a typed error, because past this point LMDB trusts the file and a bad
// one crashes the process (SIGSEGV/SIGBUS) instead of raising an error.
import { constants, type Stats } from 'node:fs';
import { access, type FileHandle, link, lstat, mkdir, open as openFile, readFile, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { BackendUnavailableError, CorruptRecordError } from '@idem/core';

export const DATA_FILE = 'idem.mdb';
/** Names the write-turn lock (see turn.ts); only who can read the directory can name it. */
export const TURN_KEY_FILE = 'turn.key';

const errno = (error: unknown) => (error as NodeJS.ErrnoException).code;
const unusable = (path: string, why: string, cause?: unknown) => new BackendUnavailableError(`cannot use ${path} as an LMDB store: ${why}`, cause);

/**
 * Makes sure `path` is a directory this process can write, creating missing
 * parents one at a time. Node's recursive mkdir loops forever on paths such as
 * /proc/x (mkdir answers ENOENT under an existing parent); here every step
 * either succeeds or fails once.
 */
export async function ensureWritableDirectory(path: string): Promise<void> {
  const missing: string[] = [];
  for (let dir = resolve(path); ; ) {
    let found: Stats;
    try {
      found = await stat(dir);
    } catch (error) {
      if (errno(error) !== 'ENOENT' || dirname(dir) === dir) throw unusable(path, `cannot stat ${dir} (${errno(error)})`, error);
      missing.push(dir);
      dir = dirname(dir);
      continue;
    }
    if (!found.isDirectory()) throw unusable(path, `${dir} is not a directory`);
    break;
  }
  for (const dir of missing.reverse()) {
    try {
      await mkdir(dir);
    } catch (error) {
      // EEXIST: another process made it in between; the stat below judges what it is.
      if (errno(error) !== 'EEXIST') throw unusable(path, `cannot create directory ${dir} (${errno(error)})`, error);
    }
  }
  const made = await stat(path).catch((error: unknown) => {
    throw unusable(path, `cannot stat it (${errno(error)})`, error);
  });
  if (!made.isDirectory()) throw unusable(path, 'not a directory');
  await access(path, constants.R_OK | constants.W_OK | constants.X_OK).catch((error: unknown) => {
    throw unusable(path, `no permission to write there (${errno(error)})`, error);
  });
}

/** What a directory holds: no store yet, or a data file that passed the checks. */
export type StoreFile = 'missing' | 'valid';

/**
 * Checks `idem.mdb` without mapping it: a regular file (never a symbolic
 * link, FIFO or directory), never empty, and with LMDB meta pages a mapping
 * can trust. A commit in another process may rewrite a meta page while it is
 * read, so a failed check is repeated before the file is called damaged.
 */
export async function checkDataFile(dir: string): Promise<StoreFile> {
  const file = join(dir, DATA_FILE);
  let damage: string | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 10 * attempt));
    let found: Stats;
    try {
      found = await lstat(file);
    } catch (error) {
      if (errno(error) === 'ENOENT') return 'missing';
      throw unusable(dir, `cannot stat ${file} (${errno(error)})`, error);
    }
    if (found.isSymbolicLink()) {
      throw new CorruptRecordError(file, 'is a symbolic link, which idem does not follow: point the store at the directory that holds the data file');
    }
    if (!found.isFile()) throw new CorruptRecordError(file, 'is not a regular file');
    damage = await readMetaDamage(dir, file);
    if (damage === undefined) return 'valid';
  }
  throw new CorruptRecordError(file, `${damage}; left untouched (restore it from a backup or move it away)`);
}

// LMDB's on-disk format, from mdb.c as vendored by lmdb-js 3.5 (64-bit builds):
// a page starts with a 24-byte header (pgno u64, txnid u64, pad u16, flags u16,
// lower/upper u16 x2); pages 0 and 1 are meta pages (flag P_META) holding
// MDB_meta: magic u32, version u32, address u64, mapsize u64, two MDB_db of 48
// bytes (free DB, main DB; md_pad of the first is the page size, md_root is at
// +40), last_pg u64, txnid u64. LMDB uses the meta with the higher txnid.
const PAGE_HEADER = 24;
const P_META = 0x08;
const MDB_MAGIC = 0xbeefc0de;
const MDB_DATA_VERSION = 2;
const META_BYTES = PAGE_HEADER + 144;
const P_INVALID = 0xffff_ffff_ffff_ffffn;

interface Meta {
  psize: number;
  roots: bigint[];
  lastPage: bigint;
  txnid: bigint;
}

function readMeta(page: Buffer, which: number): Meta | string {
  if (page.length < META_BYTES) return `meta page ${which} is cut short`;
  if ((page.readUInt16LE(18) & P_META) === 0) return `page ${which} is not an LMDB meta page`;
  if (page.readUInt32LE(PAGE_HEADER) !== MDB_MAGIC) return `meta page ${which} lacks LMDB's magic number (not an LMDB file)`;
  const version = page.readUInt32LE(PAGE_HEADER + 4) & 0xffff;
  if (version !== MDB_DATA_VERSION) return `meta page ${which} has LMDB data version ${version}, not ${MDB_DATA_VERSION}`;
  const psize = page.readUInt32LE(PAGE_HEADER + 24);
  if (psize < 512 || psize > 65_536 || (psize & (psize - 1)) !== 0) return `meta page ${which} names an impossible page size ${psize}`;
  return {
    psize,
    roots: [page.readBigUInt64LE(PAGE_HEADER + 24 + 40), page.readBigUInt64LE(PAGE_HEADER + 24 + 48 + 40)],
    lastPage: page.readBigUInt64LE(PAGE_HEADER + 120),
    txnid: page.readBigUInt64LE(PAGE_HEADER + 128),
  };
}

/** Undefined when the meta pages can be trusted, else what is wrong. */
async function readMetaDamage(dir: string, file: string): Promise<string | undefined> {
  let handle: FileHandle;
  try {
    handle = await openFile(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    throw unusable(dir, `cannot read ${file} (${errno(error)})`, error);
  }
  try {
    const first = Buffer.alloc(META_BYTES);
    const { bytesRead } = await handle.read(first, 0, META_BYTES, 0);
    if (bytesRead === 0) {
      // A store is created whole (see createDataFile): an empty file is not a new store but a lost one.
      return 'is empty: not a store idem made, and treating it as new would run past keys again';
    }
    const meta0 = readMeta(first.subarray(0, bytesRead), 0);
    if (typeof meta0 === 'string') return meta0;
    const second = Buffer.alloc(META_BYTES);
    const read1 = await handle.read(second, 0, META_BYTES, meta0.psize);
    const meta1 = readMeta(second.subarray(0, read1.bytesRead), 1);
    if (typeof meta1 === 'string') return meta1;
    if (meta1.psize !== meta0.psize) return `meta pages disagree on the page size (${meta0.psize}, ${meta1.psize})`;
    const meta = meta1.txnid > meta0.txnid ? meta1 : meta0;
    // Sized after the metas were read: the file only grows, and a commit writes its pages before its meta.
    const pages = BigInt((await handle.stat()).size) / BigInt(meta.psize);
    if (meta.lastPage < 1n) return `meta page names last page ${meta.lastPage}`;
    for (const root of meta.roots) {
      if (root !== P_INVALID && (root < 2n || root > meta.lastPage)) return `a tree root (page ${root}) lies outside the pages in use`;
      // Mapping past the end of the file is what crashes (SIGBUS). The last page itself may be
      // unwritten (mdb.c: "the file may be shorter if the freeDB lists the final pages"), a root may not.
      if (root !== P_INVALID && root >= pages) return `truncated: its tree root is page ${root} but the file holds ${pages} pages`;
    }
    return undefined;
  } finally {
    await handle.close();
  }
}

// Tree pages (mdb.c, LMDB 1.0 layout as built by lmdb-js): after the 24-byte header, mp_lower
// bytes of u16 node offsets; offsets, lower and upper count from the end of the header. A node
// is lo u16, hi u16, flags u16, ksize u16, key, data: a branch node's child page is
// lo | hi << 16 | flags << 32; a leaf node's data size is lo | hi << 16. An overflow page
// holds its page count (u32) where a tree page holds lower and upper.
const P_BRANCH = 0x01;
const P_LEAF = 0x02;
const P_OVERFLOW = 0x04;
const P_LEAF2 = 0x20;
const F_BIGDATA = 0x01;
const F_SUBDATA = 0x02;
const NODE = 8;
const MDB_DB_ROOT = 40;

/**
 * Reads every page of the trees the newer meta page names (the free list, the
 * main tree and the tables in it), by reads, never by mapping, and checks each
 * pointer a reader would follow: every page lies inside the file and says it
 * is that page, every node and every value lies inside its page or its
 * overflow pages. A file that passes cannot send LMDB's reads outside the
 * file (SIGBUS) or outside the map (SIGSEGV) through its tree. Throws
 * CorruptRecordError naming the file and the first bad page. Costs a read of
 * the whole tree: run on demand (verifyLmdbStore), not at every open.
 */
export async function verifyDataFile(dir: string): Promise<{ pages: number }> {
  // A commit in another process rewrites pages while they are read: damage counts only when
  // three walks in a row find some.
  let last: CorruptRecordError | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await walkDataFile(dir);
    } catch (error) {
      if (!(error instanceof CorruptRecordError)) throw error;
      last = error;
    }
  }
  throw last!;
}

async function walkDataFile(dir: string): Promise<{ pages: number }> {
  const file = join(dir, DATA_FILE);
  if ((await checkDataFile(dir)) === 'missing') return { pages: 0 };
  const handle = await openFile(file, constants.O_RDONLY | constants.O_NOFOLLOW).catch((error: unknown) => {
    throw unusable(dir, `cannot read ${file} (${errno(error)})`, error);
  });
  const damaged = (pgno: bigint | string, why: string) =>
    new CorruptRecordError(file, `page ${pgno} is damaged: ${why}; left untouched (restore it from a backup or move it away)`);
  try {
    // checkDataFile passed: both meta pages are sound.
    const meta0 = readMeta(await pageAt(handle, 0, META_BYTES), 0) as Meta;
    const meta1 = readMeta(await pageAt(handle, meta0.psize, META_BYTES), 1) as Meta;
    const metas = [meta0, meta1];
    const meta = metas[1]!.txnid > metas[0]!.txnid ? metas[1]! : metas[0]!;
    const { psize } = meta;
    const pages = BigInt((await handle.stat()).size) / BigInt(psize);
    const page = Buffer.alloc(psize);
    const seen = new Set<bigint>();
    const todo: bigint[] = meta.roots.filter((root) => root !== P_INVALID);
    /** Reads page `pgno` after checking that it is in the file, in use, and not met before. */
    const load = async (pgno: bigint, from: string): Promise<void> => {
      if (pgno < 2n || pgno > meta.lastPage || pgno >= pages) throw damaged(from, `it points to page ${pgno}, outside the ${pages} pages of the file`);
      if (seen.has(pgno)) throw damaged(from, `page ${pgno} is reached twice (a cycle or a shared page)`);
      seen.add(pgno);
      await handle.read(page, 0, psize, Number(pgno) * psize);
      if (page.readBigUInt64LE(0) !== pgno) throw damaged(pgno, `its header names page ${page.readBigUInt64LE(0)}`);
    };
    while (todo.length > 0) {
      const pgno = todo.pop()!;
      await load(pgno, `${pgno}`);
      const flags = page.readUInt16LE(18);
      const lower = page.readUInt16LE(20);
      const upper = page.readUInt16LE(22);
      if ((flags & (P_BRANCH | P_LEAF)) === 0 || (flags & P_BRANCH && flags & P_LEAF))
        throw damaged(pgno, `flags 0x${flags.toString(16)} are not a tree page's`);
      if (lower % 2 !== 0 || lower > upper || PAGE_HEADER + upper > psize) throw damaged(pgno, `its free space bounds (${lower}, ${upper}) are impossible`);
      if (flags & P_LEAF2) continue; // fixed-size keys, no nodes: bounded by lower and upper
      const overflows: [bigint, number][] = [];
      for (let i = 0; i < lower / 2; i++) {
        const at = PAGE_HEADER + page.readUInt16LE(PAGE_HEADER + 2 * i);
        if (at < PAGE_HEADER + upper || at + NODE > psize) throw damaged(pgno, `node ${i} lies outside the page's node area`);
        const lo = page.readUInt16LE(at);
        const hi = page.readUInt16LE(at + 2);
        const nodeFlags = page.readUInt16LE(at + 4);
        const data = at + NODE + page.readUInt16LE(at + 6);
        if (data > psize) throw damaged(pgno, `the key of node ${i} runs past the page`);
        if (flags & P_BRANCH) {
          todo.push(BigInt(lo) | (BigInt(hi) << 16n) | (BigInt(nodeFlags) << 32n));
          continue;
        }
        const size = lo + hi * 0x1_0000;
        if (nodeFlags & F_BIGDATA) {
          if (data + 8 > psize) throw damaged(pgno, `the overflow pointer of node ${i} runs past the page`);
          overflows.push([page.readBigUInt64LE(data), size]);
          continue;
        }
        if (data + size > psize) throw damaged(pgno, `the value of node ${i} (${size} bytes) runs past the page`);
        if (nodeFlags & F_SUBDATA) {
          if (size < MDB_DB_ROOT + 8) throw damaged(pgno, `node ${i} names a table but is too short to hold it`);
          const root = page.readBigUInt64LE(data + MDB_DB_ROOT);
          if (root !== P_INVALID) todo.push(root);
        }
      }
      // After the loop: reading an overflow page reuses the page buffer.
      for (const [first, size] of overflows) {
        await load(first, `${pgno}`);
        const count = page.readUInt32LE(20);
        if ((page.readUInt16LE(18) & P_OVERFLOW) === 0) throw damaged(first, 'a value points to it, but it is not an overflow page');
        if (first + BigInt(count) > pages || size > count * psize - PAGE_HEADER)
          throw damaged(first, `its ${count} overflow pages cannot hold a ${size}-byte value inside the file`);
      }
    }
    return { pages: seen.size };
  } finally {
    await handle.close();
  }
}

/** `length` bytes of the file at `offset`. */
async function pageAt(handle: FileHandle, offset: number, length: number): Promise<Buffer> {
  const bytes = Buffer.alloc(length);
  await handle.read(bytes, 0, length, offset);
  return bytes;
}

/**
 * Creates a new store whole: the data file is made under a private name
 * (`init` creates its tables and stamps the schema) and then linked in as
 * `idem.mdb`, which fails if another process got there first; the loser
 * opens the winner's. No process ever sees a half-made or empty store, so
 * concurrent first opens need no lock of their own.
 */
export async function createDataFile(dir: string, init: (file: string) => Promise<void>): Promise<void> {
  const temp = join(dir, `.${DATA_FILE}.${process.pid}.${randomBytes(6).toString('hex')}`);
  try {
    await init(temp);
    await link(temp, join(dir, DATA_FILE)).catch((error: unknown) => {
      if (errno(error) !== 'EEXIST') throw error;
      // EEXIST: another process created the store first; its file is the store.
    });
  } catch (error) {
    throw unusable(dir, `cannot create the data file (${errno(error) ?? (error as Error).message})`, error);
  } finally {
    await Promise.all([rm(temp, { force: true }), rm(`${temp}-lock`, { force: true })]);
  }
  await syncDirectory(dir);
}

/** The random key naming the write-turn lock, created once per store (same link-or-adopt step). */
export async function turnKey(dir: string): Promise<string> {
  const file = join(dir, TURN_KEY_FILE);
  const read = () =>
    readFile(file, 'utf8').then(
      (text) => text.trim(),
      (error: unknown) => {
        if (errno(error) === 'ENOENT') return undefined;
        throw unusable(dir, `cannot read ${file} (${errno(error)})`, error);
      },
    );
  const found = await read();
  if (found) return found;
  const temp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
  const handle = await openFile(temp, 'wx', 0o660);
  try {
    await handle.writeFile(`${randomBytes(16).toString('hex')}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temp, file).catch((error: unknown) => {
      if (errno(error) !== 'EEXIST') throw unusable(dir, `cannot create ${file} (${errno(error)})`, error);
      // EEXIST: another process made the key first; everyone uses that one.
    });
  } finally {
    await rm(temp, { force: true });
  }
  const key = await read();
  if (!key) throw unusable(dir, `${file} is empty`);
  return key;
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await openFile(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } catch (error) {
    // Some filesystems refuse fsync on a directory (EINVAL); the link is then as durable as they make it.
    if (errno(error) !== 'EINVAL') throw error;
  } finally {
    await handle.close();
  }
}
