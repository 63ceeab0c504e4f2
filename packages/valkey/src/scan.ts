// What `list` needs besides the driver: the nodes it scans, the SCAN pattern's escaping, and
// the cursor it hands out (the SCAN position and the rest of its last batch).
import { InvalidArgumentError } from '@idem/core/adapter';
import type { ValkeyClient } from './client.js';

export const SCAN_COUNT = 256;

/** The masters `list` scans (the client itself when standalone), in a stable order. */
export async function scanNodes(client: ValkeyClient): Promise<ValkeyClient[]> {
  const masters = client.masters ? await client.masters() : client.isCluster && client.nodes ? client.nodes('master') : undefined;
  if (masters === undefined) return [client];
  // A stable order, so that a cursor's node index means the same node on the next page.
  const key = (c: ValkeyClient) => {
    const o = (c as { options?: { host?: string; port?: number } }).options;
    return `${o?.host}:${o?.port}`;
  };
  return [...masters].sort((x, y) => (key(x) < key(y) ? -1 : 1));
}

/** node:scanCursor:name,name,... (the rest of the SCAN batch, in order). */
export function decodeCursor(cursor: string | undefined): [number, string, string[]] {
  if (cursor === undefined) return [0, '0', []];
  const m = /^(\d+):(\d+):((?:[0-9a-f]{64}(?:,[0-9a-f]{64})*)?)$/.exec(cursor);
  if (!m) throw new InvalidArgumentError('cursor must be a string from a previous page');
  return [Number(m[1]), m[2]!, m[3] ? m[3].split(',') : []];
}

export function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
