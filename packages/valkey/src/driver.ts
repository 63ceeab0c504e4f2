// The driver: claim, finish, read, list and remove as single Lua scripts (lua.ts) judged by the
// server's clock, each sent once per attempt through the tick's batch (batch.ts) and bounded by
// the retry and deadline policy (deadline.ts); the record bytes are made in bytes.ts.
import { createHash } from 'node:crypto';
import {
  BackendUnavailableError,
  CorruptRecordError,
  decideFinish,
  isExpired,
  KeyReuseError,
  LeaseLostError,
  leaseOf,
  parseRecord,
  RECORD_VERSION,
  STORAGE_NAME,
  type ClaimInput,
  type ClaimOutcome,
  type CorruptEntry,
  type Driver,
  type FinishOp,
  type FinishValue,
  type IdemRecord,
  type Lease,
  type ListPage,
  type ListQuery,
} from '@idem/core/adapter';
import { TickBatcher } from './batch.js';
import { acquiredBytes, claimHead, finishedParts, fingerprintPart, HolderBytes, labelsPart } from './bytes.js';
import type { Arg, Guard, ValkeyClient } from './client.js';
import { Deadlines, describe, pauseAfter, within } from './deadline.js';
import { CLAIM_LUA, FINISH_LUA, READ_LUA, REMOVE_LUA } from './lua.js';
import { decodeCursor, globEscape, SCAN_COUNT, scanNodes } from './scan.js';

/** A script's answer: a tag, then record JSON (or a reason), nil when absent. */
type ScriptReply = [string, (string | null)?, (string | null)?];

export interface Settings {
  prefix: string;
  lingerMs: number;
  timeoutMs: number;
  minReplicas: number;
  replicaTimeoutMs: number;
  /** WAITAOF instead of WAIT: acknowledged once fsynced on the primary and minReplicas replicas. */
  fsync: boolean;
}

export class ValkeyDriver implements Driver {
  readonly kind = 'valkey';
  readonly capabilities = { nativeExpiry: true, clock: 'server', sharedAcrossProcesses: true } as const;
  private readonly claimSha = sha1(CLAIM_LUA);
  private readonly finishSha = sha1(FINISH_LUA);
  private readonly removeSha = sha1(REMOVE_LUA);
  private readonly readSha = sha1(READ_LUA);
  private readonly deadlines: Deadlines;
  /** The tick's corked sockets, and with minReplicas its scripts waiting for their shared WAIT. */
  private readonly batch: TickBatcher;
  private readonly holders = new HolderBytes();

  constructor(
    private readonly client: ValkeyClient,
    private readonly owned: boolean,
    private readonly guard: Guard,
    private readonly settings: Settings,
  ) {
    this.deadlines = new Deadlines(settings.timeoutMs);
    this.batch = new TickBatcher(client, settings.minReplicas, settings.replicaTimeoutMs, settings.fsync);
  }

  // The digest is the hash tag: a record's slot depends on its key alone, whatever the prefix.
  private recordKey = (name: string) => `${this.settings.prefix}{${name}}`;

  async claim(input: ClaimInput): Promise<ClaimOutcome> {
    const rk = this.recordKey(input.name);
    // The record's constant part is encoded here (JSON.stringify), so the script only appends numbers.
    const head = claimHead(input);
    const fpPart = fingerprintPart(input);
    const holderPart = this.holders.part(input.holder);
    const labels = labelsPart(input);
    const args = [
      head,
      fpPart,
      input.fingerprint ?? '',
      input.runId,
      input.leaseMs,
      this.settings.lingerMs,
      input.force ? '1' : '0',
      input.dedupOn,
      '',
      holderPart,
      labels,
    ];
    const reply = ValkeyDriver.scriptReply(await this.evalScript(CLAIM_LUA, this.claimSha, rk, args, false, true));
    if (typeof reply === 'number') {
      // The fast path (SET NX on a key with no trace): the record is the one we sent, stamped with the server's time.
      const record: IdemRecord = {
        v: RECORD_VERSION,
        key: input.recordKey,
        status: 'in_flight',
        runId: input.runId,
        fence: reply,
        attempt: 1,
        ...(input.fingerprint !== undefined ? { fingerprint: input.fingerprint } : {}),
        claimedAt: reply,
        leaseExpiresAt: reply + input.leaseMs,
      };
      if (input.holder !== undefined) record.holder = input.holder;
      if (input.labels !== undefined) record.labels = input.labels;
      // The stored bytes, as the script built them: the lease's version, for the finish's fast path.
      const raw = acquiredBytes(head, fpPart, reply, reply + input.leaseMs, holderPart, labels);
      return { outcome: 'acquired', lease: leaseOf(input.key, input.name, record, raw) };
    }
    const [tag, a, b] = reply;
    switch (tag) {
      case 'acquired':
      case 'adopted': {
        const lease = this.leaseFrom(input.key, input.name, rk, a!);
        const previous = b ? parseRecord(rk, b) : undefined;
        if (tag === 'adopted') return { outcome: tag, lease, previous: previous! };
        return previous ? { outcome: tag, lease, previous } : { outcome: tag, lease };
      }
      // Our own claim found again on a retry: the first attempt landed but its reply was lost.
      case 'own':
        return { outcome: 'acquired', lease: this.leaseFrom(input.key, input.name, rk, a!) };
      case 'in_flight':
      case 'completed':
        return { outcome: tag, record: parseRecord(rk, a!) };
      case 'reuse':
        throw new KeyReuseError(parseRecord(rk, a!), input.fingerprint!);
      default:
        throw this.corrupt(rk, a);
    }
  }

  /** A lease on stored bytes: its version is those bytes when the record can take the finish's fast path. */
  private leaseFrom(key: string, name: string, rk: string, raw: string): Lease {
    const record = parseRecord(rk, raw);
    return leaseOf(key, name, record, record.status === 'in_flight' && record.expiresAt === undefined ? raw : undefined);
  }

  async finish(lease: Lease, op: FinishOp): Promise<FinishValue> {
    const rk = this.recordKey(lease.name);
    const retentionMs = op.op === 'complete' || op.op === 'fail' ? op.retentionMs : 0; // only a finish starts retention
    const payload =
      op.op === 'complete' && op.result !== undefined ? JSON.stringify(op.result) : op.op === 'fail' && op.error !== undefined ? JSON.stringify(op.error) : '';
    // complete and fail: the finished record is made here from the bytes the lease holds, and the
    // script writes it only if the key still holds exactly those bytes (see FINISH_LUA).
    const fast =
      op.op === 'complete' || op.op === 'fail'
        ? finishedParts(lease, op.op === 'complete' ? 'succeeded' : 'failed', payload ? `,"${op.op === 'complete' ? 'result' : 'error'}":${payload}}` : '}')
        : undefined;
    const leaseMs = op.op === 'renew' ? op.leaseMs : 0;
    const args = [
      op.op,
      lease.runId,
      lease.fence,
      leaseMs,
      retentionMs,
      this.settings.lingerMs,
      payload,
      fast ? lease.version! : '',
      fast?.[0] ?? '',
      fast?.[1] ?? '',
    ];
    const reply = ValkeyDriver.scriptReply(await this.evalScript(FINISH_LUA, this.finishSha, rk, args, false, true));
    if (typeof reply === 'number') {
      if (!fast || (op.op !== 'complete' && op.op !== 'fail')) throw new BackendUnavailableError(`unexpected finish reply ${reply}`);
      // The record the script wrote: the lease's, finished by core's decision at the server's time `reply`.
      return { record: decideFinish(lease.record, lease, op, reply).value.record! };
    }
    const [tag, a] = reply;
    if (tag === 'lost') throw new LeaseLostError(lease.key, a ? parseRecord(rk, a) : undefined);
    if (tag !== 'ok') throw this.corrupt(rk, a);
    if (!a) return {};
    if (op.op === 'renew') return { lease: this.leaseFrom(lease.key, lease.name, rk, a) };
    return { record: parseRecord(rk, a) };
  }

  /**
   * Records linger past their end (see lingerMs) and count as absent from
   * then on; that end is judged here by the server's clock, like every
   * other deadline of this store, so an expired record is never returned.
   */
  async read(name: string): Promise<IdemRecord | undefined> {
    return this.readKey(this.recordKey(name));
  }

  private async readKey(rk: string): Promise<IdemRecord | undefined> {
    const reply = (await this.evalScript(READ_LUA, this.readSha, rk, [], true, false)) as Buffer[];
    const tag = reply[0]?.toString();
    if (tag === 'none') return undefined;
    if (tag !== 'found') throw this.corrupt(rk, reply[1]?.toString());
    const record = parseRecord(this.nameOf(rk), reply[1]!);
    return isExpired(record, Number(reply[2]!.toString())) ? undefined : record;
  }

  /** SCAN over every master (one for standalone), in a fixed node order. */
  async list(query: ListQuery): Promise<ListPage> {
    const nodes = await this.op(() => scanNodes(this.client));
    // The cursor carries the SCAN position and the names of its last batch not yet returned, so a
    // page never repeats a SCAN call: SCAN's own promise holds (a record present for the whole
    // listing is returned), and the listing ends however the keyspace changes meanwhile.
    let [node, scanCursor, pending] = decodeCursor(query.cursor);
    const pattern = `${globEscape(this.settings.prefix)}{*}`;
    const records: IdemRecord[] = [];
    const corrupt: CorruptEntry[] = [];
    const page = (cursor?: string): ListPage => ({ records, ...(corrupt.length > 0 ? { corrupt } : {}), ...(cursor !== undefined ? { cursor } : {}) });
    for (;;) {
      if (pending.length === 0) {
        if (node >= nodes.length) return page();
        const [next, keys] = (await this.op(() => nodes[node]!.call('SCAN', scanCursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT))) as [string, string[]];
        // Only storage names (sha256 hex), as on every scanning store; sorted so pages are stable.
        pending = keys
          .map((k) => k.slice(this.settings.prefix.length + 1, -1))
          .filter((name) => STORAGE_NAME.test(name))
          .sort();
        if (next === '0') [node, scanCursor] = [node + 1, '0'];
        else scanCursor = next;
      }
      // A corrupt record is named (by its storage name) and the listing goes on: one hides no other.
      const found = await Promise.all(
        pending.map((name) =>
          this.readKey(this.recordKey(name)).catch((error: unknown) => {
            if (!(error instanceof CorruptRecordError)) throw error;
            return { name, reason: error.message };
          }),
        ),
      );
      for (const [i, record] of found.entries()) {
        if (records.length === query.limit) return page(`${node}:${scanCursor}:${pending.slice(i).join(',')}`);
        if (record !== undefined && 'reason' in record) corrupt.push(record);
        else if (record !== undefined && query.filter(record)) records.push(record);
      }
      pending = [];
    }
  }

  /** Never called (nativeExpiry): Valkey removes records when their PX runs out. */
  async sweep() {
    return { expired: 0, deadLeases: 0 };
  }

  /** Ends the record at once (it lingers to hand its fence on); a foreign or corrupt value is deleted. */
  async remove(name: string): Promise<boolean> {
    const reply = await this.evalScript(REMOVE_LUA, this.removeSha, this.recordKey(name), [this.settings.lingerMs], false, true);
    return reply === 1;
  }

  async writeRaw(name: string, bytes: string | Uint8Array): Promise<void> {
    await this.op(() => this.client.call('SET', this.recordKey(name), typeof bytes === 'string' ? bytes : Buffer.from(bytes)));
  }

  async close(): Promise<void> {
    if (!this.owned) return;
    const c = this.client as ValkeyClient & { status?: string; disconnect?(): void };
    // QUIT is queued while the server is down, and would wait for it for ever: only a live connection says goodbye.
    if (c.status !== 'ready' && typeof c.disconnect === 'function') return c.disconnect();
    try {
      await within(this.client.quit(), this.settings.timeoutMs);
    } catch (error) {
      // Already disconnected (server gone) or no answer in time: nothing left to close but the socket.
      if (!(error instanceof Error)) throw error;
      c.disconnect?.();
    }
  }

  /** Named by its storage name (sha256 hex), the same form on every backend, not by the Valkey key. */
  private corrupt(rk: string, why: unknown): CorruptRecordError {
    return new CorruptRecordError(this.nameOf(rk), typeof why === 'string' ? why : 'unreadable');
  }

  private nameOf(rk: string): string {
    return rk.slice(this.settings.prefix.length + 1, -1);
  }

  /** A claim's or finish's reply, checked: a server time (their fast paths), or a tag and records. */
  private static scriptReply(reply: unknown): ScriptReply | number {
    if (typeof reply === 'number' && Number.isSafeInteger(reply) && reply > 0) return reply;
    const ok = Array.isArray(reply) && typeof reply[0] === 'string' && reply.slice(1).every((x) => x == null || typeof x === 'string');
    if (!ok) throw new BackendUnavailableError(`unexpected script reply ${JSON.stringify(reply)?.slice(0, 100)}: is this Valkey/Redis 7?`);
    return reply as ScriptReply;
  }

  /**
   * Sends a script once. `buffers`: replies as raw bytes, so that a record that is not UTF-8 is
   * seen as it is stored. `writes`: with minReplicas or fsync, the script waits for the end of the
   * tick, to go out with the others of its connection and their one WAIT or WAITAOF (see TickBatcher.queueAcked).
   */
  private sendScript(command: 'EVALSHA' | 'EVAL', body: string, key: string, args: Arg[], buffers: boolean, writes: boolean): Promise<unknown> {
    if (writes && (this.settings.minReplicas > 0 || this.settings.fsync)) return this.batch.queueAcked(command, body, key, args);
    this.batch.cork();
    const c = this.client;
    if (!buffers) return c.call(command, body, 1, key, ...args);
    // Bytes through evalshaBuffer where the client has it: ioredis's auto-pipelining drops the
    // command name of a callBuffer (it sends the SHA as the command), but not of evalshaBuffer.
    const bytes = command === 'EVALSHA' ? c.evalshaBuffer : c.evalBuffer;
    return bytes ? bytes.call(c, body, 1, key, ...args) : c.callBuffer(command, body, 1, key, ...args);
  }

  /**
   * Runs a script by its SHA1 (one round trip); after NOSCRIPT (the server restarted or flushed
   * its cache) sends the body, which loads it. Bounded by timeoutMs, every failure mapped to
   * BACKEND_UNAVAILABLE. Transport failures are retried with the same arguments inside the
   * budget: each script recognises its own earlier write (same runId and fence), so a retry after
   * a lost reply never reports someone else's claim. One async function from send to reply: a
   * layer each for the retries, the script cache and the bound cost a promise each, a measurable
   * share of a first execution's client CPU.
   */
  private async evalScript(lua: string, sha: string, key: string, args: Arg[], buffers: boolean, writes: boolean): Promise<unknown> {
    const deadline = Date.now() + this.settings.timeoutMs;
    let command: 'EVALSHA' | 'EVAL' = 'EVALSHA';
    let first: string | undefined;
    for (let attempt = 0; ; attempt++) {
      if (this.guard.fatal) throw this.guard.fatal;
      try {
        const sent = this.sendScript(command, command === 'EVALSHA' ? sha : lua, key, args, buffers, writes);
        // Every attempt is bounded by what is left of the budget, so a retry late in it cannot overrun
        // it (a per-command timeout counting from each send once took 7 s for 5 s).
        // The first attempt shares one timer with every other first attempt (see Deadlines).
        return await (attempt === 0 ? this.deadlines.bound(sent) : within(sent, Math.max(1, deadline - Date.now())));
      } catch (error) {
        // Not loaded: the body next, at once (in a later batch with its own WAIT under minReplicas).
        if (command === 'EVALSHA' && error instanceof Error && error.message.startsWith('NOSCRIPT')) {
          command = 'EVAL';
          continue;
        }
        first ??= describe(error);
        await new Promise((r) => setTimeout(r, pauseAfter(this.client, this.guard, error, attempt, deadline, first!, true)));
      }
    }
  }

  /** Bounds one command by timeoutMs and maps its failure to BACKEND_UNAVAILABLE (SCAN, and writeRaw for the tests). */
  private async op<T>(fn: () => Promise<T>): Promise<T> {
    if (this.guard.fatal) throw this.guard.fatal;
    try {
      return await this.deadlines.bound(fn());
    } catch (error) {
      pauseAfter(this.client, this.guard, error, 0, 0, describe(error), false); // throws: a command alone is not retried
      throw error;
    }
  }
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}
