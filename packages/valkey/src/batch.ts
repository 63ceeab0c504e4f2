// Per-tick batching: the sockets corked until the end of the tick, and with minReplicas the
// tick's writing scripts gathered per connection, to go out with their one shared WAIT.
import calculateSlot from 'cluster-key-slot';
import type { Arg, ValkeyClient } from './client.js';

/** A script waiting for the end of the tick, to go out with the others of its connection and their one WAIT. */
interface AckedScript {
  command: 'EVALSHA' | 'EVAL';
  body: string;
  key: string;
  args: Arg[];
  resolve(reply: unknown): void;
  reject(error: unknown): void;
}

/** The driver holds one: `cork()` before every send, `queueAcked` for a write under minReplicas. */
export class TickBatcher {
  /** An end of tick is scheduled (sockets corked, acknowledged scripts gathered until then). */
  private tickPending = false;
  /** With minReplicas: this tick's scripts, per connection ('' standalone, the slot's node list on a Cluster). */
  private acked = new Map<string | symbol, AckedScript[]>();

  constructor(
    private readonly client: ValkeyClient,
    private readonly minReplicas: number,
    private readonly replicaTimeoutMs: number,
    /** WAITAOF 1 minReplicas instead of WAIT minReplicas: the writes fsynced on the primary and on the replicas. */
    private readonly fsync: boolean,
  ) {}

  /**
   * Holds the socket's writes until the current burst of JS is over (process.nextTick runs after the
   * microtasks queued so far), so that the commands of every call resumed by one read of replies go
   * out in one write (writev) instead of one system call each, as node-redis does. At 64 calls in
   * flight this is most of the client's CPU per command; at 1 in flight the write waits for no
   * timer, only for the end of the current tick. ioredis's enableAutoPipelining batches too, but
   * builds a Pipeline per tick and waits for setImmediate: slower at every depth (see the README).
   * A Cluster's master sockets are all corked (commands go to the node of their slot).
   * At the end of the tick, before the sockets let go, the scripts waiting for replica
   * acknowledgement go out with their shared WAIT (see sendAcked): in the same write.
   */
  cork(): void {
    if (this.tickPending) return;
    this.tickPending = true;
    const c = this.client;
    const streams = c.isCluster ? (c.nodes?.('master') ?? []).map((n) => n.stream) : [c.stream];
    const held = streams.filter((s): s is NonNullable<ValkeyClient['stream']> => typeof s?.cork === 'function' && typeof s.uncork === 'function');
    for (const s of held) s.cork();
    process.nextTick(() => {
      this.tickPending = false;
      const batches = this.acked;
      if (batches.size > 0) {
        this.acked = new Map();
        for (const batch of batches.values()) this.sendAcked(batch);
      }
      for (const s of held) s.uncork();
    });
  }

  /**
   * With minReplicas, a writing script joins this tick's batch for its connection, and settles
   * with its own reply once the batch's WAIT is in. The batch goes out as its scripts, then WAIT
   * for the replicas, in one pipeline: one round trip, and on a Cluster the same node (the
   * pipeline goes where its keys live; WAIT has no key). WAIT counts the replicas
   * that hold every write this connection made before it, so one WAIT after the scripts of a tick
   * covers them all: a client blocked in WAIT has its next commands held until WAIT returns, so a
   * WAIT per script would serialise the operations in flight, one replica round trip each. A
   * script that wrote nothing (a duplicate, or a retry that finds its own earlier write) rewrites
   * its record first (see lua.ts): its connection may be a new one, whose last write is not the
   * one that matters.
   *
   * Timeline: t0 the tick's scripts run and write on the primary, in order; t1 WAIT returns the
   * replicas that hold all of them. Only after t1 with enough replicas is any outcome returned: a
   * failover after t1 promotes a replica that holds it (a copy in memory, not on disk: see the README).
   */
  queueAcked(command: 'EVALSHA' | 'EVAL', body: string, key: string, args: Arg[]): Promise<unknown> {
    this.cork();
    const conn = this.connectionOf(key);
    return new Promise((resolve, reject) => {
      const entry: AckedScript = { command, body, key, args, resolve, reject };
      const batch = conn === undefined ? undefined : this.acked.get(conn);
      if (batch) batch.push(entry);
      // A key whose master is not known yet (a Cluster before its slots): a batch of its own.
      else this.acked.set(conn ?? Symbol('unrouted'), [entry]);
    });
  }

  /**
   * The connection a key's script goes to: the only one of a Redis client (Sentinel too), the
   * master of its slot on a Cluster, named by the slot's node list as ioredis groups slots (its
   * pipeline refuses keys of two groups), undefined when its map does not know the slot yet.
   */
  private connectionOf(key: string): string | undefined {
    const c = this.client;
    if (!c.isCluster) return '';
    // The slot as ioredis computes it (the same module), hash tag included: its grouping is the one to match.
    return c.slots?.[calculateSlot(key)]?.join(';') || undefined;
  }

  /** Sends one batch: its scripts, then one WAIT; each script's caller gets its own reply or error, or the WAIT's failure. */
  private sendAcked(batch: AckedScript[]): void {
    const fail = (error: unknown) => {
      for (const e of batch) e.reject(error);
    };
    let results: Promise<Array<[Error | null, unknown]> | null>;
    // One pipeline, not a command each: should the connection drop after some of its replies, ioredis
    // fails the rest of it (the WAIT) instead of resending it alone on a new connection, where it
    // would count no write of ours and so acknowledge at once.
    try {
      const p = this.client.pipeline!();
      for (const e of batch) p.call(e.command, e.body, 1, e.key, ...e.args);
      // WAITAOF counts, like WAIT, the writes of this connection: the primary's fsync, then the replicas'.
      results = (this.fsync ? p.call('WAITAOF', 1, this.minReplicas, this.replicaTimeoutMs) : p.call('WAIT', this.minReplicas, this.replicaTimeoutMs)).exec();
    } catch (error) {
      // A client that refuses the pipeline at once (closed): every operation of it fails, and may retry.
      return fail(error);
    }
    results.then((replies) => {
      if (!replies || replies.length !== batch.length + 1) return fail(new Error('pipeline aborted'));
      const [waitError, acked] = replies[batch.length]!;
      const short = waitError ?? this.shortfall(acked);
      let moved = false;
      batch.forEach((e, i) => {
        const [scriptError, reply] = replies[i]!;
        // ioredis follows MOVED/ASK inside a pipeline only when every command is read-only (WAIT is not).
        if (scriptError && /^(MOVED|ASK) /.test(scriptError.message)) moved = true;
        if (scriptError) e.reject(scriptError);
        else if (short) e.reject(short);
        else e.resolve(reply);
      });
      if (moved) this.client.refreshSlotsCache?.();
    }, fail);
  }

  /** WAIT's count of replicas (WAITAOF's [local, replicas]) when it falls short of the promise, as an error; else undefined. */
  private shortfall(acked: unknown): Error | undefined {
    const within = `within ${this.replicaTimeoutMs} ms`;
    if (!this.fsync) {
      return typeof acked === 'number' && acked >= this.minReplicas
        ? undefined
        : new Error(`${String(acked)} of ${this.minReplicas} replicas acknowledged the write ${within}`);
    }
    const [local, replicas] = Array.isArray(acked) ? acked : [];
    if (typeof local === 'number' && local >= 1 && typeof replicas === 'number' && replicas >= this.minReplicas) return undefined;
    return new Error(
      `the write was fsynced on ${local === 1 ? 'the primary' : 'not the primary'} and ${String(replicas)} of ${this.minReplicas} replicas ${within}`,
    );
  }
}
