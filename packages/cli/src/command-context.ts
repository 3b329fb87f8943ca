import { BerthClient, DEFAULT_ADDRESS, DEFAULT_NAMESPACE } from '@berth/client';
import type { Command } from 'commander';
import { ExitCode, errorLines, exitCodeOf } from './exit-code.js';

/** Where a run of the CLI reads and writes; main.ts binds it to the process, tests to strings. */
export interface CliIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** A signal that aborts on SIGINT/SIGTERM; asked for only by commands that run until interrupted. */
  readonly interrupted: () => AbortSignal;
}

export interface GlobalOptions {
  readonly address?: string;
  readonly namespace?: string;
  /** Milliseconds. */
  readonly timeout?: number;
}

/** One run of the CLI: the parsed global options, the client made from them, the exit code so far. */
export class CommandContext {
  exitCode: ExitCode = ExitCode.Ok;
  private clientInstance?: BerthClient;

  constructor(
    readonly io: CliIO,
    private readonly program: Command,
  ) {}

  get address(): string {
    return this.globals.address ?? this.io.env.BERTH_ADDRESS ?? DEFAULT_ADDRESS;
  }

  get namespace(): string {
    return this.globals.namespace ?? this.io.env.BERTH_NAMESPACE ?? DEFAULT_NAMESPACE;
  }

  /** Made on first use, so that usage errors never touch the daemon. */
  get client(): BerthClient {
    this.clientInstance ??= new BerthClient({
      address: this.address,
      namespace: this.namespace,
      ...(this.globals.timeout ? { timeout: this.globals.timeout } : {}),
    });
    return this.clientInstance;
  }

  out(line: string): void {
    this.io.stdout(line.endsWith('\n') ? line : `${line}\n`);
  }

  /** Report an error and carry on; the run exits with the worst code seen. */
  report(err: unknown): ExitCode {
    for (const line of errorLines(err, this.address)) this.io.stderr(`${line}\n`);
    const code = exitCodeOf(err);
    if (code > this.exitCode) this.exitCode = code;
    return code;
  }

  close(): void {
    this.clientInstance?.close();
  }

  private get globals(): GlobalOptions {
    return this.program.opts<GlobalOptions>();
  }
}
