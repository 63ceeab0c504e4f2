// Write turns: which process of a host may write a store now. See
// docs/decisions/lmdb-write-turns.md for why LMDB's own writer lock is not
// enough and why the lock is a socket name.
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { BackendUnavailableError } from '@idem/core';
import { turnKey } from './files.js';

type Unlock = () => Promise<void>;
/** Takes the lock; `wanted` is called when another process waits for it (when the lock can tell). */
type Take = (wanted: () => void) => Promise<Unlock>;
/** A turn held this long takes no new writers, so that other processes get theirs. */
const MAX_TURN_MS = 20;
/** A waiter is woken when the holder lets go; this only bounds a missed wake-up. */
const RECHECK_MS = 250;

/**
 * Processes write in turns: a process takes the store's lock before its first
 * write transaction (opening the environment counts: lmdb-js opens tables in
 * one) and gives it back when its last one in flight has committed.
 * Concurrent claims of one process share a turn (lmdb-js batches them); a
 * turn stops taking writers once another process waits (when the lock can
 * tell) or after MAX_TURN_MS. An idle turn is never kept: a holder frozen by
 * SIGSTOP, a GC pause or a suspended VM would stall every other process
 * (a CLI test that stops a run between its writes caught this).
 */
export class WriteTurn {
  private lock: Promise<Unlock> | undefined;
  private since = Number.POSITIVE_INFINITY;
  private writers = 0;
  private wanted = false;
  private releasing: Promise<void> | undefined;
  private ended: Promise<void> = Promise.resolve();
  private end: () => void = () => undefined;

  private constructor(private readonly take: Take) {}

  /** The turn of the store in `dir` (which must exist and be writable). */
  static async of(dir: string): Promise<WriteTurn> {
    if (process.platform !== 'linux') return new WriteTurn(() => lockFileTurn(dir));
    const { dev, ino } = await stat(dir);
    const key = await turnKey(dir);
    // The kernel frees an abstract socket name when its holder dies (kill -9 included), at once.
    const name = `\0idem-lmdb-turn-${createHash('sha256').update(`${dev}:${ino}:${key}`).digest('hex').slice(0, 40)}`;
    return new WriteTurn((wanted) => socketTurn(name, dir, wanted));
  }

  async run<T>(write: () => Promise<T>): Promise<T> {
    for (;;) {
      if (this.releasing) await this.releasing;
      else if (this.lock !== undefined && this.closedToNewWriters()) await this.ended;
      else break;
    }
    if (this.lock === undefined) {
      this.ended = new Promise((resolve) => (this.end = resolve));
      this.since = Number.POSITIVE_INFINITY; // a turn being waited for still takes writers
      this.wanted = false;
      this.lock = this.take(() => this.onWanted()).then((unlock) => {
        this.since = Date.now();
        return unlock;
      });
    }
    const lock = this.lock;
    this.writers++;
    try {
      await lock;
      return await write();
    } finally {
      if (--this.writers === 0 && this.lock === lock) await this.release();
    }
  }

  private closedToNewWriters(): boolean {
    return this.wanted || Date.now() - this.since > MAX_TURN_MS;
  }

  private onWanted(): void {
    this.wanted = true;
  }

  private release(): Promise<void> {
    const lock = this.lock;
    if (lock === undefined) return this.releasing ?? Promise.resolve();
    this.lock = undefined;
    const end = this.end;
    this.releasing = lock
      .then(
        (unlock) => unlock(),
        () => undefined, // the turn was never taken: its error already reached every writer
      )
      .finally(() => {
        this.releasing = undefined;
        end();
      });
    return this.releasing;
  }
}

/**
 * Linux: the turn is an abstract unix socket name, which one socket at a time
 * can hold and which the kernel releases when the holder's process ends,
 * however it ends. A waiter connects to the holder and retries when that
 * connection closes (release or death), so hand-over needs no polling, and
 * the holder learns that someone waits (its turn then takes no new writers). The
 * name hashes the directory's device and inode with a random key kept in the
 * store (turn.key): a user who cannot read the store cannot squat the name.
 * Node opens sockets close-on-exec, so a spawned command never inherits a turn.
 */
async function socketTurn(name: string, dir: string, wanted: () => void): Promise<Unlock> {
  for (;;) {
    const held = new Set<Socket>();
    const server = createServer((socket) => {
      wanted();
      held.add(socket);
      socket.unref();
      socket.on('error', () => undefined); // a waiter going away is no concern of the holder
      socket.on('close', () => held.delete(socket));
    });
    try {
      await listen(server, name);
      server.unref(); // holding a turn never keeps the process alive
      return async () => {
        // close() closes the listening descriptor at once (libuv closes a pipe's fd in uv_close; only
        // the callback waits for the loop), so the name is free when it returns: no need to await 'close'.
        server.close();
        for (const socket of held) socket.destroy(); // wakes the waiters
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
        throw new BackendUnavailableError(`cannot take the write turn on ${dir}: ${(error as Error).message}`, error);
      }
    }
    await holderGone(name);
  }
}

function listen(server: Server, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(name, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Resolves when the current holder lets go or dies (or after RECHECK_MS). */
function holderGone(name: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = createConnection(name);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, RECHECK_MS);
    socket.on('error', done); // ECONNREFUSED: the holder let go in between; try again at once
    socket.on('close', done);
  });
}

/**
 * Elsewhere (no abstract sockets): proper-lockfile's lock directory. A process
 * that dies in its turn holds the others up for STALE_TURN_MS, and the
 * package installs signal-exit's handlers (see the README).
 */
const STALE_TURN_MS = 5_000;
async function lockFileTurn(dir: string): Promise<Unlock> {
  const { default: lockfile } = await import('proper-lockfile');
  try {
    const unlock = await lockfile.lock(dir, {
      lockfilePath: join(dir, 'write.lock'),
      realpath: false,
      stale: STALE_TURN_MS,
      retries: { retries: 1_000, minTimeout: 1, maxTimeout: 20 },
      // A turn lasts milliseconds; if its lock was taken over as stale, the writes already ran. Say so, do not crash.
      onCompromised: (error) => process.emitWarning(`@idem/lmdb: write turn lock on ${dir} was compromised: ${error.message}`),
    });
    return () => unlock().catch((error: unknown) => process.emitWarning(`@idem/lmdb: could not release the write turn on ${dir}: ${(error as Error).message}`));
  } catch (error) {
    throw new BackendUnavailableError(`cannot take the write turn on ${dir}: ${(error as Error).message}`, error);
  }
}
