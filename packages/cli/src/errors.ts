// The CLI's own errors; the exit-code table (README "Exit codes") is @idem/core/report's.
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

// The exit-code table and error vocabulary are core's run-report module, shared with embedders.
export {
  EXIT_CODES as EXIT,
  errorCodeOf as codeOf,
  exitCodeOfError as exitCodeOf,
  errorMessageOf as messageOf,
} from '@idem/core/report';
