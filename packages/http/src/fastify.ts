// Fastify plugin over the one core: preHandler claims (or answers a replay or a problem), onSend
// stores the payload (a stream buffered up to the bound) under the claim's fence before it is sent,
// or swaps in a problem if the lease was lost.
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HttpIdempotency, type CapturedResponse, type IdempotencyOptions, type Run } from './core.js';

export interface FastifyIdempotencyOptions extends IdempotencyOptions {
  /** Who the caller is (tenant, user, API key id), from your auth: keys are scoped by it. */
  identity: (request: FastifyRequest) => string | Promise<string>;
  /** The route a key is scoped to. Default the route's template (`/orders/:id`), else the path. */
  route?: (request: FastifyRequest) => string;
}

export type FastifyIdempotencyPlugin = (instance: FastifyInstance) => Promise<void>;

/**
 * `app.register(idempotency({ store, identity }))`: covers every route of the scope it is registered
 * in (not encapsulated). Handlers find their claim in `request.idempotency`: `{ signal, fence }`.
 */
export function idempotency(options: FastifyIdempotencyOptions): FastifyIdempotencyPlugin {
  const core = new HttpIdempotency(options);
  if (typeof options.identity !== 'function') throw new TypeError('identity must be a function of the request');
  const route = options.route ?? ((request: FastifyRequest) => request.routeOptions.url ?? request.url.split('?')[0]!);
  const header = core.header.toLowerCase();
  const runs = new WeakMap<FastifyRequest, Run>();

  const plugin = async (app: FastifyInstance) => {
    if (!app.hasRequestDecorator('idempotency')) app.decorateRequest('idempotency', null);
    app.addHook('preHandler', async (request, reply) => {
      const raw = request.headers[header];
      const key = Array.isArray(raw) ? raw.join(', ') : (raw ?? null);
      if (!core.covers(request.method) || (key === null && options.required === false)) return;
      const declared = core.tooLarge(request.headers['content-length']);
      if (declared) return send(reply, declared);
      const q = request.url.indexOf('?');
      const body = request.body as Parameters<HttpIdempotency['begin']>[0]['body'] | string;
      const begin = await core.begin({
        method: request.method,
        path: q < 0 ? request.url : request.url.slice(0, q),
        query: q < 0 ? '' : request.url.slice(q + 1),
        key,
        identity: await options.identity(request),
        route: route(request),
        body: typeof body === 'string' ? Buffer.from(body) : body,
        contentType: request.headers['content-type'] ?? null,
      });
      if (begin.kind === 'respond') return send(reply, begin.response);
      if (begin.kind === 'run') {
        runs.set(request, begin.run);
        (request as FastifyRequest & { idempotency?: unknown }).idempotency = { signal: begin.run.signal, fence: begin.run.fence };
      }
    });
    app.addHook('onSend', async (request, reply, payload: unknown) => {
      const run = runs.get(request);
      if (run === undefined) return payload;
      runs.delete(request);
      let body: Buffer | undefined;
      if (payload instanceof Readable) {
        // A stream is buffered up to the bound; past it, it goes on as a stream, uncached.
        const read = await readPrefix(payload, core.maxResponseBytes);
        if (read.rest) payload = read.rest;
        else payload = body = read.prefix;
      } else body = typeof payload === 'string' ? Buffer.from(payload) : payload == null ? Buffer.alloc(0) : (payload as Buffer);
      const captured =
        body !== undefined && body.byteLength <= core.maxResponseBytes ? { status: reply.statusCode, headers: headersOf(reply), body } : 'uncacheable';
      const answer = await run.finish(captured as CapturedResponse | 'uncacheable');
      if (answer === undefined) return payload;
      for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name);
      reply.code(answer.status);
      for (const [name, value] of answer.headers) reply.header(name, value);
      return Buffer.from(answer.body);
    });
    // A request that ended without passing onSend (aborted, hijacked): settle its claim.
    const settle = async (request: FastifyRequest) => {
      const run = runs.get(request);
      if (run === undefined) return;
      runs.delete(request);
      await run.crash(new Error('the request ended before its response was sent'));
    };
    app.addHook('onResponse', settle);
    app.addHook('onRequestAbort', settle);
  };
  // Not encapsulated (what fastify-plugin sets): the hooks cover the scope the plugin is registered in.
  Object.defineProperty(plugin, Symbol.for('skip-override'), { value: true });
  return plugin;
}

/** Reads up to `max` bytes of a stream: the whole of it, or what was read and a stream of it all. */
async function readPrefix(stream: Readable, max: number): Promise<{ prefix: Buffer; rest?: Readable }> {
  const chunks: Buffer[] = [];
  let size = 0;
  const it: AsyncIterator<Buffer | string> = stream[Symbol.asyncIterator]();
  for (;;) {
    const { done, value } = await it.next();
    if (done) return { prefix: Buffer.concat(chunks, size) };
    const chunk = typeof value === 'string' ? Buffer.from(value) : value;
    chunks.push(chunk);
    size += chunk.byteLength;
    if (size > max) {
      const prefix = Buffer.concat(chunks, size);
      const rest = async function* () {
        yield prefix;
        for (let next = await it.next(); !next.done; next = await it.next()) yield next.value;
      };
      return { prefix, rest: Readable.from(rest()) };
    }
  }
}

function headersOf(reply: FastifyReply): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (Array.isArray(value)) for (const v of value) out.push([name, String(v)]);
    else if (value !== undefined) out.push([name, String(value)]);
  }
  return out;
}

function send(reply: FastifyReply, response: CapturedResponse): FastifyReply {
  reply.code(response.status);
  for (const [name, value] of response.headers) reply.header(name, value);
  return reply.send(Buffer.from(response.body));
}
