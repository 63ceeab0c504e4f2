// The CLI's own errors; their codes and the exit-code table (README "Exit codes") are
// @idem/core's, so a library caller and a script reading exit codes see one vocabulary.
import { IdemError, type IdemErrorCode } from '@idem/core';

/** The codes only the CLI raises; they are core's (one code space, one exit-code table). */
export type CliErrorCode = Extract<IdemErrorCode, 'USAGE' | 'SPAWN_FAILED' | 'INTERNAL'>;

export class CliError extends IdemError {
  declare readonly code: CliErrorCode;
  /** Overrides the exit code of the code (SPAWN_FAILED: 126 or 127, as shells do). */
  readonly exitCode: number | undefined;
  constructor(code: CliErrorCode, message: string, options?: { cause?: unknown; exitCode?: number }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
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
