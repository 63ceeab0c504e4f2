import { InvalidArgumentError } from '@idem/core/adapter';
import type { ValkeyClient, ValkeyPipeline } from './index.js';

type Arg = string | number | Buffer;

/**
 * What the store needs of a node-redis client (`createClient()` of `@redis/client` / `redis` 5 or
 * 6), typed structurally: @idem/valkey never imports @redis/client, so an app without it installs
 * nothing more, and the app's own copy is the one used.
 */
export interface NodeRedisClient {
  sendCommand(args: Array<string | Buffer>, options?: object): Promise<unknown>;
  withTypeMapping(mapping: object): unknown;
  close?(): Promise<unknown>;
  quit?(): Promise<unknown>;
  options?: { keyPrefix?: unknown; RESP?: number } | undefined;
}

/** A node-redis client or one of its cluster, sentinel or pool kinds: has sendCommand and no ioredis `call`. */
export function isNodeRedis(client: object): boolean {
  const c = client as Record<string, unknown>;
  return typeof c.sendCommand === 'function' && typeof c.call !== 'function';
}

/**
 * The ValkeyClient the store drives, over a plain node-redis client; anything else of node-redis
 * is refused here, before any I/O, with what to use instead.
 */
export function fromNodeRedis(client: object): ValkeyClient {
  const c = client as NodeRedisClient & Record<string, unknown>;
  // Their sendCommand takes routing arguments first (a key, isReadonly), and a pool spreads
  // commands over several connections, where a WAIT would count another connection's writes.
  if (typeof c.getSlotMaster === 'function')
    throw new InvalidArgumentError(
      'a node-redis cluster client (createCluster) is not supported: give cluster: ["host:port", ...] and the store opens an ioredis Cluster',
    );
  if (typeof c.getSentinelNode === 'function')
    throw new InvalidArgumentError(
      'a node-redis Sentinel client (createSentinel) is not supported: give url: "redis+sentinel://..." and the store opens its own client',
    );
  if (typeof c.execute === 'function')
    throw new InvalidArgumentError('a node-redis client pool (createClientPool) is not supported: give one connected client (createClient)');
  // node-redis 4 (@redis/client 1.x) and a legacy() wrapper have neither type mappings nor the command options used below.
  if (typeof c.withTypeMapping !== 'function')
    throw new InvalidArgumentError(
      'client looks like node-redis 4 (@redis/client 1.x) or a legacy() client: give a createClient() of redis / @redis/client 5 or later',
    );
  // The store sends raw commands, which node-redis 6 does not prefix (and SCAN replies never are).
  if (c.options?.keyPrefix) throw new InvalidArgumentError('client has keyPrefix set: use the store option prefix instead');

  // Per command, so that a type mapping or timeout the caller set on the client does not apply:
  // replies as node-redis's default types (text as strings), or bulk strings as raw bytes (so a
  // record that is not UTF-8 is seen as stored). No per-command timer (node-redis 6 arms a 5 s
  // AbortSignal per command by default): the store bounds every operation by timeoutMs itself.
  // 36 is RESP's `$` (bulk string), the key of node-redis's RESP_TYPES.BLOB_STRING.
  const TEXT = { typeMapping: {}, timeout: undefined };
  const BYTES = { typeMapping: { 36: Buffer }, timeout: undefined };
  // RESP3 clients (`RESP: 3`) need nothing more: the replies the store reads (script tables,
  // integers, SCAN, WAIT) come the same, and a script's false in a table arrives as null on both.
  const send = (options: object, command: string, args: Arg[]) => {
    const argv: Array<string | Buffer> = [command];
    for (const a of args) argv.push(typeof a === 'number' ? String(a) : a);
    return c.sendCommand(argv, options);
  };

  return {
    call: (command, ...args) => send(TEXT, command, args),
    callBuffer: (command, ...args) => send(BYTES, command, args),
    // The caller's client: the store never closes it (close() only closes a client it opened).
    quit: () => (c.close ?? c.quit)!.call(c),
    // No `stream` to cork: node-redis already writes the commands queued before its setImmediate
    // in one socket write. Used only with minReplicas: the scripts and their WAIT are queued in
    // order on this one connection, under one chainId, so that if the connection drops after some
    // of them were written node-redis fails the rest (the WAIT) instead of resending it alone on a
    // new connection, where it would count no write of ours. Each command settles on its own.
    pipeline: () => {
      const chain = { ...TEXT, chainId: Symbol('idem WAIT batch') };
      const replies: Array<Promise<[Error | null, unknown]>> = [];
      const p: ValkeyPipeline = {
        call: (command, ...args) => {
          replies.push(
            send(chain, command, args).then(
              (r) => [null, r],
              (e: unknown) => [e instanceof Error ? e : new Error(String(e)), undefined],
            ),
          );
          return p;
        },
        exec: () => Promise.all(replies),
      };
      return p;
    },
  };
}
