import { errorKindOf, errorMessage } from '@berth/plugin-api';
import { CommanderError } from 'commander';

/** What `berth` exits with; scripts may rely on these (see README.md). */
export const ExitCode = {
  Ok: 0,
  /** The daemon refused the request or failed. */
  Failed: 1,
  /** Unknown command or option, malformed argument. */
  Usage: 2,
  /** The daemon could not be reached. */
  Unreachable: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A command line berth cannot make sense of; exits 2 without asking the daemon. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function exitCodeOf(err: unknown): ExitCode {
  if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
  if (err instanceof UsageError) return ExitCode.Usage;
  if (errorKindOf(err) === 'unavailable') return ExitCode.Unreachable;
  return ExitCode.Failed;
}

/** The lines to print on stderr for an error (none for commander's, which it printed itself). */
export function errorLines(err: unknown, address: string): string[] {
  if (err instanceof CommanderError) return [];
  if (err instanceof UsageError) return [`berth: ${err.message}`, `berth: run 'berth --help' for usage`];
  if (errorKindOf(err) === 'unavailable') {
    // grpc-js buries the cause (ENOENT: no socket; ECONNREFUSED: nobody listening; EACCES) in a long text.
    const cause = /connect (E[A-Z]+)/.exec(errorMessage(err))?.[1];
    return [
      `berth: cannot connect to berthd at ${address}${cause ? ` (${cause})` : ''}`,
      'berth: start it with `npm start`, or point --address (or BERTH_ADDRESS) at its socket',
    ];
  }
  return [`berth: ${errorMessage(err)}`];
}
