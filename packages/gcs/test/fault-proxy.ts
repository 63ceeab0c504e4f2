// A loopback HTTP proxy in front of the emulator that counts requests and
// injects faults: refuse without forwarding, or forward (the write lands)
// and then lose the reply — the case a client retry turns into a 412.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault =
  /** Answer this status without forwarding: nothing reaches the server. */
  | { refuse: number }
  /** Forward, let the server act, then answer this status instead of its reply. */
  | { landThenFail: number }
  /** Forward, let the server act, then cut the connection. */
  | 'landThenReset'
  /** Run `before` (e.g. a competing write), then forward. */
  | { before: () => Promise<void> }
  /** Forward, then alter the reply (e.g. the server's times). */
  | { rewrite: (reply: Reply) => Reply };

export interface Reply {
  status: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
}

export interface Seen {
  method: string;
  url: string;
}

export class FaultProxy {
  readonly seen: Seen[] = [];
  /** Decides per request; undefined forwards it untouched. */
  rule: (req: Seen) => Fault | undefined = () => undefined;
  private server: Server | undefined;

  constructor(private readonly target: string) {}

  get url(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** Requests seen since `from`, as "METHOD path" with the query dropped, for counting. */
  since(from: number): string[] {
    return this.seen.slice(from).map((s) => `${s.method} ${s.url.split('?')[0]}`);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = Buffer.concat(await req.toArray());
    const seen = { method: req.method ?? 'GET', url: req.url ?? '/' };
    this.seen.push(seen);
    const fault = this.rule(seen);
    if (fault !== undefined && typeof fault === 'object' && 'refuse' in fault) {
      res.writeHead(fault.refuse, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: fault.refuse, message: 'injected' } }));
      return;
    }
    if (fault !== undefined && typeof fault === 'object' && 'before' in fault) await fault.before();
    let upstream: Reply;
    try {
      upstream = await this.forward(req, body);
    } catch (error) {
      res.writeHead(502).end(String(error));
      return;
    }
    if (fault === 'landThenReset') {
      res.socket?.destroy();
      return;
    }
    if (fault !== undefined && typeof fault === 'object' && 'landThenFail' in fault) {
      res
        .writeHead(fault.landThenFail, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { code: fault.landThenFail, message: 'injected after the write' } }));
      return;
    }
    if (fault !== undefined && typeof fault === 'object' && 'rewrite' in fault) upstream = fault.rewrite(upstream);
    res.writeHead(upstream.status, { ...upstream.headers, 'content-length': String(upstream.body.length) }).end(upstream.body);
  }

  private forward(req: IncomingMessage, body: Buffer): Promise<Reply> {
    const target = new URL(req.url ?? '/', this.target);
    return new Promise((resolve, reject) => {
      const out = request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (up) => {
        const chunks: Buffer[] = [];
        up.on('data', (c: Buffer) => chunks.push(c));
        up.on('end', () => {
          const headers: Record<string, string | string[]> = {};
          for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && k !== 'transfer-encoding' && k !== 'connection') headers[k] = v;
          resolve({ status: up.statusCode ?? 502, headers, body: Buffer.concat(chunks) });
        });
        up.on('error', reject);
      });
      out.on('error', reject);
      out.end(body);
    });
  }
}
