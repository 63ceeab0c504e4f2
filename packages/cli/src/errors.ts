// The CLI's own errors and the exit-code table (README "Exit codes").
// Errors from @idem/core keep their codes; the CLI adds only what a library has no use for.

export type CliErrorCode =
  /** Unknown command or flag, missing or malformed argument. */
  | 'USAGE'
  /** The store URL's scheme needs a package that is not installed. */
  | 'ADAPTER_MISSING'
  /** The command could not be started (not found, not executable). */
  | 'SPAWN_FAILED'
  /** A bug or an unexpected fault. */
  | 'INTERNAL';

export class CliError extends Error {
  readonly code: CliErrorCode;
  /** Overrides the exit code of the code (SPAWN_FAILED: 126 or 127, as shells do). */
  readonly exitCode: number | undefined;
  constructor(code: CliErrorCode, message: string, options?: { cause?: unknown; exitCode?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
    this.code = code;
    this.exitCode = options?.exitCode;
  }
}

export const usage = (message: string, cause?: unknown) => new CliError('USAGE', message, { cause });

/** idem's own exit codes; a run that executed the command exits with the command's code instead. */
export const EXIT = {
  OK: 0,
  /** `status`: no record; `check`: dead leases found. */
  NEGATIVE: 1,
  USAGE: 64,
  KEY_REUSE: 65,
  UNAVAILABLE: 69,
  INTERNAL: 70,
  CORRUPT: 74,
  IN_FLIGHT: 75,
  LEASE_LOST: 76,
  NOT_EXECUTABLE: 126,
  NOT_FOUND: 127,
} as const;

const BY_CODE: Record<string, number> = {
  USAGE: EXIT.USAGE,
  INVALID_ARGUMENT: EXIT.USAGE,
  INVALID_KEY: EXIT.USAGE,
  INVALID_STORE_URL: EXIT.USAGE,
  KEY_REUSE_MISMATCH: EXIT.KEY_REUSE,
  BACKEND_UNAVAILABLE: EXIT.UNAVAILABLE,
  ADAPTER_MISSING: EXIT.UNAVAILABLE,
  CORRUPT_RECORD: EXIT.CORRUPT,
  IN_FLIGHT: EXIT.IN_FLIGHT,
  LEASE_LOST: EXIT.LEASE_LOST,
};

/** The stable code of anything thrown: core's or the CLI's, else INTERNAL. */
export function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code in BY_CODE || code === 'SPAWN_FAILED' || code === 'INTERNAL') ? code : 'INTERNAL';
}

export function exitCodeOf(error: unknown): number {
  if (error instanceof CliError && error.exitCode !== undefined) return error.exitCode;
  return BY_CODE[codeOf(error)] ?? EXIT.INTERNAL;
}

/** One line, whatever the message holds. */
export function messageOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
