// An HTTP handler for the S3 client that wraps the real one and injects one
// network fault per armed rule: the request never arrives, the reply is lost
// after the server applied it, the reply is too slow, or a canned S3 error;
// and it can shift the server's Date header. It can also play a server with a
// quirk of its own (README "Compatibility"): one that ignores a precondition,
// or compares If-Match with an unquoted stored ETag.
import { Readable } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';

export type Fault =
  | { kind: 'drop' } // connection reset before the server saw the request
  | { kind: 'lose-reply' } // the server applied the request, the reply is lost (reset)
  | { kind: 'slow' } // the server applied it, the reply arrives after the caller's deadline
  | { kind: 'status'; status: number; code: string }; // a canned S3 error answer, request not forwarded

interface Req {
  method: string;
  path: string;
  headers: Record<string, string>;
}
type Inner = {
  handle(request: Req, options?: { abortSignal?: AbortSignal }): Promise<{ response: { statusCode: number; headers: Record<string, string>; body?: unknown } }>;
  updateHttpClientConfig(key: never, value: never): void;
  httpHandlerConfigs(): unknown;
  destroy?(): void;
};

const header = (req: Req, name: string) => Object.entries(req.headers).find(([k]) => k.toLowerCase() === name)?.[1];
/** "PUT If-None-Match", "PUT If-Match", "PUT", "GET", "DELETE", ... */
export const describeRequest = (req: Req) => `${req.method}${header(req, 'if-none-match') ? ' If-None-Match' : header(req, 'if-match') ? ' If-Match' : ''}`;

const resetError = (message: string) => Object.assign(new Error(message), { code: 'ECONNRESET' });

/** Whole-server quirks, on every request until changed. */
export type Quirk =
  /** Drops If-None-Match from PUTs: a create overwrites (the server "ignores" it). */
  | 'no-if-none-match'
  /** Drops If-Match from PUTs: a replace on a stale ETag overwrites. */
  | 'no-if-match'
  /** Drops If-Match from DELETEs: a stale conditional delete deletes. */
  | 'no-delete-if-match'
  /** Compares If-Match byte for byte with an unquoted stored ETag: the quoted ETag it returned gets 412; ignores If-Match on DELETE. */
  | 'unquoted-etags'
  /** Refuses every If-Match on PUT with 412, in any form. */
  | 'refuse-if-match';

const hasQuote = (v: string | undefined) => v?.startsWith('"') === true;

export class FaultHandler {
  readonly seen: string[] = [];
  readonly quirks = new Set<Quirk>();
  /** Moves the Date header of every forwarded reply, as if the server's clock ran this far ahead. */
  dateShiftMs = 0;
  private readonly armed: { on: string; fault: Fault }[] = [];
  constructor(private readonly inner: Inner) {}

  /** The next request described as `on` (see describeRequest) gets `fault`. */
  arm(on: string, fault: Fault): void {
    this.armed.push({ on, fault });
  }

  async handle(request: Req, options?: { abortSignal?: AbortSignal }) {
    const what = describeRequest(request);
    this.seen.push(what);
    const i = this.armed.findIndex((a) => a.on === what);
    const fault = i < 0 ? undefined : this.armed.splice(i, 1)[0]!.fault;
    if (fault?.kind === 'drop') throw resetError('socket hang up (injected: request dropped)');
    const ifMatch = header(request, 'if-match');
    const refused =
      request.method === 'PUT' && ifMatch !== undefined && (this.quirks.has('refuse-if-match') || (this.quirks.has('unquoted-etags') && hasQuote(ifMatch)));
    if (fault?.kind === 'status' || refused) {
      const [status, code] = fault?.kind === 'status' ? [fault.status, fault.code] : [412, 'PreconditionFailed'];
      const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected</Message><RequestId>x</RequestId></Error>`;
      return { response: { statusCode: status, headers: { 'content-type': 'application/xml' }, body: Readable.from([Buffer.from(xml)]) } };
    }
    const out = await this.inner.handle(request, options);
    const date = out.response.headers.date;
    if (this.dateShiftMs !== 0 && date !== undefined) out.response.headers.date = new Date(Date.parse(date) + this.dateShiftMs).toUTCString();
    if (fault === undefined) return out;
    (out.response.body as Readable | undefined)?.destroy?.();
    if (fault.kind === 'lose-reply') throw resetError('socket hang up (injected: reply lost)');
    // slow: hold the reply until the caller gives up.
    const signal = options?.abortSignal;
    await new Promise<void>((resolve) => {
      if (!signal) return void setTimeout(resolve, 5_000);
      if (signal.aborted) return resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
    throw Object.assign(new Error('The operation was aborted (injected: slow reply)'), { name: 'AbortError' });
  }

  /**
   * Installs the header-dropping quirks on `client`. They act before signing
   * (a header removed after it would break the signature), so `seen` shows the request as sent.
   */
  install(client: S3Client): void {
    type Args = { input: Record<string, unknown> };
    type Next = (args: Args) => Promise<unknown>;
    // The stack's own types are per command; this middleware only edits the input of two of them.
    const stack = client.middlewareStack as unknown as {
      add(m: (next: Next, context: { commandName?: string }) => Next, o: { step: 'initialize'; name: string }): void;
    };
    stack.add(
      (next, context) => async (args) => {
        const put = context.commandName === 'PutObjectCommand';
        if (put && this.quirks.has('no-if-none-match')) delete args.input.IfNoneMatch;
        if (put && this.quirks.has('no-if-match')) delete args.input.IfMatch;
        const del = context.commandName === 'DeleteObjectCommand';
        if (del && (this.quirks.has('no-delete-if-match') || this.quirks.has('unquoted-etags'))) delete args.input.IfMatch;
        return next(args);
      },
      { step: 'initialize', name: 'idemTestQuirks' },
    );
  }

  updateHttpClientConfig(key: never, value: never) {
    this.inner.updateHttpClientConfig(key, value);
  }
  httpHandlerConfigs() {
    return this.inner.httpHandlerConfigs();
  }
  destroy() {
    this.inner.destroy?.();
  }
}

/** The SDK's own Node handler, taken from a throwaway client so no @smithy package is imported directly. */
export function defaultHandler(): Inner {
  return new S3Client({ region: 'us-east-1' }).config.requestHandler as unknown as Inner;
}
