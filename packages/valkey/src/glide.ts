// A caller's Valkey GLIDE client (@valkey/valkey-glide GlideClient or GlideClusterClient), driven
// through customCommand. Typed structurally: @idem/valkey never imports GLIDE, so an app without
// it installs nothing more, and the app's own copy (with its native core) is the one used.
import { InvalidArgumentError } from '@idem/core/adapter';
import type { Arg, ValkeyClient } from './client.js';

/** What the store needs of a GLIDE client: customCommand, and close (never called on a caller's client). */
export interface GlideClientLike {
  customCommand(args: Array<string | Buffer>, options?: object): Promise<unknown>;
  close(errorMessage?: string): void;
}

// GLIDE's Decoder enum, by value (part of its API: Bytes = 0, String = 1), so as not to import it.
const BYTES = 0;
const STRING = 1;

/** A GLIDE client: customCommand, and neither ioredis's `call` nor node-redis's `sendCommand`. */
export function isGlide(client: object): boolean {
  const c = client as Record<string, unknown>;
  return typeof c.customCommand === 'function' && typeof c.call !== 'function' && typeof c.sendCommand !== 'function';
}

/**
 * The ValkeyClient the store drives over a GLIDE client. No `pipeline`: GLIDE's batches route a
 * keyless WAIT on their own (on a cluster, to any node), and nothing ties it to the connection
 * that ran the scripts, so minReplicas and fsync are refused at open (index.ts).
 * No `stream` to cork: GLIDE's core batches its socket writes itself.
 */
export function fromGlide(client: object): ValkeyClient {
  const c = client as GlideClientLike & Record<string, unknown>;
  if (typeof c.close !== 'function')
    throw new InvalidArgumentError('client looks like Valkey GLIDE but has no close(): give a GlideClient or GlideClusterClient');
  // fcallWithRoute exists on GlideClusterClient only.
  const cluster = typeof c.fcallWithRoute === 'function';
  const wrap = (route: object | undefined): ValkeyClient => {
    const send = (decoder: number, command: string, args: Arg[]) => {
      const argv: Array<string | Buffer> = [command];
      for (const a of args) argv.push(typeof a === 'number' ? String(a) : a);
      return c.customCommand(argv, route ? { decoder, route } : { decoder }).then(plain, rename);
    };
    return {
      call: (command, ...args) => send(STRING, command, args),
      callBuffer: (command, ...args) => send(BYTES, command, args),
      quit: async () => c.close(),
    };
  };
  const self = wrap(undefined);
  if (!cluster) return self;
  return {
    ...self,
    // `list` scans every primary: the primaries of CLUSTER SLOTS, each addressed by GLIDE's routeByAddress.
    masters: async () => {
      const slots = (await self.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number, ...unknown[]], ...unknown[]]>;
      const seen = new Map<string, ValkeyClient>();
      for (const [, , [host, port]] of slots) {
        const address = `${host}:${port}`;
        if (!seen.has(address)) seen.set(address, { ...wrap({ type: 'routeByAddress', host, port }), options: { host, port } } as ValkeyClient);
      }
      return [...seen.values()];
    },
  };
}

/**
 * Replies as the store reads them from the other clients: a script's `false` in a table comes
 * back over RESP3 (GLIDE's default) as false, where RESP2 and the other clients give null.
 */
function plain(reply: unknown): unknown {
  return Array.isArray(reply) ? reply.map((x) => (x === false ? null : x)) : reply;
}

/**
 * GLIDE reports a server error as "An error was signalled by the server: - NoScriptError: ...":
 * the store recognises NOSCRIPT by the server's own prefix, given back here.
 */
function rename(error: unknown): never {
  if (error instanceof Error && /NoScriptError/.test(error.message)) throw new Error(`NOSCRIPT ${error.message}`, { cause: error });
  throw error;
}
