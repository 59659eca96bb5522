/**
 * Errors the CLI raises itself: printed as `error: <message>` without a stack, with an exit code
 * (2 for a usage error, 1 for a run that could not complete).
 */

/** A CLI failure with its exit code. */
export class CliError extends Error {
  override readonly name: string = 'CliError';

  constructor(
    message: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
  }
}

/** A usage error (bad flag, bad value, unsupported combination): exit code 2. */
export class UsageError extends CliError {
  override readonly name: string = 'UsageError';

  constructor(message: string) {
    super(message, 2);
  }
}
