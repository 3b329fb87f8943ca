import { Command, InvalidArgumentError, Option } from 'commander';
import { type CliIO, CommandContext } from './command-context.js';
import { registerContainers } from './commands/containers.js';
import { registerContent } from './commands/content.js';
import { registerEvents } from './commands/events.js';
import { registerImages } from './commands/images.js';
import { registerImagesRemote } from './commands/images-remote.js';
import { registerLeases } from './commands/leases.js';
import { registerNamespaces } from './commands/namespaces.js';
import { registerPlugins } from './commands/plugins.js';
import { registerRun } from './commands/run.js';
import { registerSnapshots } from './commands/snapshots.js';
import { registerTasks } from './commands/tasks.js';
import { CLI_VERSION, registerVersion } from './commands/version.js';
import { type ExitCode, UsageError } from './exit-code.js';
import { parseDuration } from './format.js';

function durationOption(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    // commander reports its own InvalidArgumentError as a usage error naming the option.
    throw err instanceof UsageError ? new InvalidArgumentError(err.message) : err;
  }
}

/** The `berth` program; its actions run against `ctx`. Exported for tests and embedding. */
export function createProgram(io: CliIO): { program: Command; ctx: CommandContext } {
  const program = new Command('berth');
  const ctx = new CommandContext(io, program);
  // Set before adding commands: subcommands inherit output and exit behaviour.
  program
    .description('command-line client for berthd')
    .version(CLI_VERSION, '-v, --version', 'print the CLI version')
    .addOption(new Option('-a, --address <path>', 'berthd socket (env: BERTH_ADDRESS, default: /run/berth/berthd.sock)'))
    .addOption(new Option('-n, --namespace <name>', 'namespace for the request (env: BERTH_NAMESPACE, default: default)'))
    .addOption(
      new Option('--timeout <duration>', 'deadline for each request, e.g. 10s or 500ms (default: none)').argParser(
        durationOption,
      ),
    )
    .exitOverride()
    .configureOutput({
      writeOut: io.stdout,
      writeErr: io.stderr,
      outputError: (str, write) => write(str.replace(/^error: /, 'berth: ')),
    })
    .showHelpAfterError(`(run 'berth --help' for usage)`);
  // As ctr: global options go before the command, so that `berth run IMAGE ID CMD -n …` leaves `-n` to CMD.
  program.enablePositionalOptions();
  registerVersion(program, ctx);
  registerNamespaces(program, ctx);
  registerPlugins(program, ctx);
  registerEvents(program, ctx);
  registerContent(program, ctx);
  registerLeases(program, ctx);
  registerImages(program, ctx);
  registerImagesRemote(program, ctx);
  registerRun(program, ctx);
  registerContainers(program, ctx);
  registerTasks(program, ctx);
  registerSnapshots(program, ctx);
  return { program, ctx };
}

/**
 * Run `berth` with `argv` (without node and the script) and return the exit
 * code: 0 ok, 1 the daemon refused or failed, 2 usage error, 3 unreachable.
 */
export async function runCli(argv: readonly string[], io: CliIO): Promise<ExitCode> {
  const { program, ctx } = createProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    ctx.report(err);
  } finally {
    ctx.close();
  }
  return ctx.exitCode;
}
