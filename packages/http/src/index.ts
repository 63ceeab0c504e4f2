// The fetch-standard entry: Request in, Response out. Serves Hono, Next.js route handlers, Bun,
// Deno and any runtime that speaks fetch; the Express and Fastify entries are thin shells over the
// same core (./core.js).
import { HttpIdempotency, type CapturedResponse, type IdempotencyOptions } from './core.js';

export {
  HttpIdempotency,
  bodyDigest,
  type Begin,
  type CapturedResponse,
  type Exchange,
  type FingerprintField,
  type IdempotencyOptions,
  type Run,
} from './core.js';
export { problem, type ProblemCode } from './problem.js';

export interface FetchIdempotencyOptions extends IdempotencyOptions {
  /** Who the caller is (tenant, user, API key id), from your auth: keys are scoped by it. */
  identity: (request: Request) => string | Promise<string>;
  /** The route a key is scoped to. Default the URL's path. */
  route?: (request: Request) => string;
}

/** What a handler is told of its claim; absent when the request is not covered (no key, another method). */
export interface HandlerContext {
  /** Aborts if the request's lease is lost to another request. */
  signal?: AbortSignal;
  /** The claim's fence, for downstream writes that refuse lower fences. */
  fence?: number;
}

export type FetchHandler = (request: Request, context: HandlerContext) => Response | Promise<Response>;

/**
 * Wraps a fetch handler: covered requests with an Idempotency-Key run it at most once per
 * (identity, method, route, key); retries get the stored response back.
 */
export function idempotent(handler: FetchHandler, options: FetchIdempotencyOptions): (request: Request) => Promise<Response> {
  const core = new HttpIdempotency(options);
  if (typeof options.identity !== 'function') throw new TypeError('identity must be a function of the request');
  const route = options.route;
  return async (request) => {
    const key = request.headers.get(core.header);
    if (!core.covers(request.method) || (key === null && options.required === false)) return handler(request, {});
    const length = request.headers.get('content-length');
    const declared = core.tooLarge(length);
    if (declared) return toResponse(declared);
    const body = await readBody(request, length, core.maxRequestBytes);
    if (body === undefined) return toResponse(core.bodyTooLarge());
    const { path, query } = splitUrl(request.url);
    const begin = await core.begin({
      method: request.method,
      path,
      query,
      key,
      identity: await options.identity(request),
      route: route ? route(request) : path,
      body,
      contentType: request.headers.get('content-type'),
    });
    if (begin.kind === 'respond') return toResponse(begin.response);
    // The body was read for the fingerprint: the handler gets a request carrying the same bytes
    // (built only when the handler runs: a replay or a problem never needs it).
    const again = new Request(request.url, {
      method: request.method,
      headers: request.headers,
      body: body.byteLength > 0 ? body : null,
      signal: request.signal,
    });
    if (begin.kind === 'pass') return handler(again, {});
    const { run } = begin;
    let response: Response;
    try {
      response = await handler(again, { signal: run.signal, fence: run.fence });
    } catch (error) {
      await run.crash(error);
      throw error;
    }
    if (!core.caches(response.status)) {
      const answer = await run.finish('uncacheable');
      return answer ? toResponse(answer) : response;
    }
    const read = await readPrefix(response.body, core.maxResponseBytes);
    if (read.rest !== undefined) {
      // Past the bound: passed through as it streams, not stored, the claim failed or released.
      const answer = await run.finish('uncacheable');
      if (answer) {
        await read.rest.cancel();
        return toResponse(answer);
      }
      return new Response(concatStream(read.prefix, read.rest), { status: response.status, statusText: response.statusText, headers: response.headers });
    }
    const answer = await run.finish({ status: response.status, headers: [...response.headers], body: read.prefix });
    if (answer) return toResponse(answer);
    return new Response(bodyOf(response.status, read.prefix), { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

/** A captured response as a fetch Response. */
export function toResponse(captured: CapturedResponse): Response {
  return new Response(bodyOf(captured.status, captured.body), { status: captured.status, headers: headerInit(captured.headers) });
}

/**
 * Headers as a record when no name repeats (a server may write a record without building a
 * Headers first: Hono on Node does), else as the pairs. A record without a prototype, so that
 * no header name can reach Object.prototype.
 */
function headerInit(headers: CapturedResponse['headers']): Record<string, string> | [string, string][] {
  const record: Record<string, string> = Object.create(null);
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (lower in record) return headers as [string, string][];
    record[lower] = value;
  }
  return record;
}

function bodyOf(status: number, body: Uint8Array): Uint8Array<ArrayBuffer> | null {
  // A Response with status 101, 204, 205 or 304 may carry no body at all.
  return status === 204 || status === 205 || status === 304 || status === 101 ? null : (body as Uint8Array<ArrayBuffer>);
}

/**
 * The request's body, or undefined past `max` bytes. With a declared length (already checked
 * against `max`) it is read whole, which lets a server skip the web stream (Hono on Node reads the
 * socket's buffers directly); the bytes are counted anyway, since a runtime may not hold a body to
 * its declared length. Without one (chunked) it is read as a stream up to the bound.
 */
async function readBody(request: Request, declared: string | null, max: number): Promise<Uint8Array | undefined> {
  if (declared === null) return readBounded(request.body, max);
  const bytes = new Uint8Array(await request.arrayBuffer());
  return bytes.byteLength > max ? undefined : bytes;
}

/** The path and the query (without `?`) of an absolute URL, without parsing the rest of it. */
function splitUrl(url: string): { path: string; query: string } {
  const fragment = url.indexOf('#');
  const end = fragment === -1 ? url.length : fragment;
  const start = url.indexOf('/', url.indexOf('//') + 2);
  if (start === -1 || start > end) {
    const parsed = new URL(url);
    return { path: parsed.pathname, query: parsed.search.slice(1) };
  }
  const q = url.indexOf('?', start);
  return q === -1 || q > end ? { path: url.slice(start, end), query: '' } : { path: url.slice(start, q), query: url.slice(q + 1, end) };
}

/** Reads a whole body, or undefined past `max` bytes (the rest is cancelled). */
async function readBounded(stream: ReadableStream<Uint8Array> | null, max: number): Promise<Uint8Array | undefined> {
  const read = await readPrefix(stream, max);
  if (read.rest === undefined) return read.prefix;
  await read.rest.cancel();
  return undefined;
}

/** Reads up to `max` bytes; past that, what was read and the stream to go on with. */
async function readPrefix(
  stream: ReadableStream<Uint8Array> | null,
  max: number,
): Promise<{ prefix: Uint8Array; rest?: ReadableStreamDefaultReader<Uint8Array> }> {
  if (stream === null) return { prefix: new Uint8Array(0) };
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { prefix: Buffer.concat(chunks, size) };
    chunks.push(value);
    size += value.byteLength;
    if (size > max) return { prefix: Buffer.concat(chunks, size), rest: reader };
  }
}

function concatStream(prefix: Uint8Array, rest: ReadableStreamDefaultReader<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(prefix);
    },
    async pull(controller) {
      const { done, value } = await rest.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return rest.cancel(reason);
    },
  });
}
