export { type CliIO, CommandContext, type GlobalOptions } from './command-context.js';
export { createProgram, runCli } from './cli.js';
export { formatEvent, watchEvents } from './commands/events.js';
export { createNamespace, labelNamespace, listNamespaces, removeNamespaces } from './commands/namespaces.js';
export { formatPluginDetails, formatPluginTable, listPlugins } from './commands/plugins.js';
export { CLI_VERSION, printVersion } from './commands/version.js';
export { ExitCode, exitCodeOf, UsageError } from './exit-code.js';
export { formatLabels, formatTable, parseDuration, parseLabels } from './format.js';
