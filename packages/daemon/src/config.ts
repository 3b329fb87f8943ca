import { InvalidArgumentError, type LogLevel } from '@berth/plugin-api';
import { isLogLevel } from '@berth/core';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parse } from 'smol-toml';

/** berthd's configuration, shaped like containerd's config.toml (version 2). */
export interface DaemonConfig {
  readonly version: number;
  readonly root: string;
  readonly state: string;
  readonly grpc: {
    readonly address: string;
    /** Owner of the socket; with a non-zero gid the socket is 0660 for that group. */
    readonly uid: number;
    readonly gid: number;
  };
  readonly logLevel: LogLevel;
  /** containerd's `disabled_plugins`: `type.id` addresses. */
  readonly disabledPlugins: readonly string[];
  /** containerd's `required_plugins`: start-up fails unless these load (the metadata store always is). */
  readonly requiredPlugins: readonly string[];
  /** berth's extension: npm packages (names or paths) whose plugins to load. */
  readonly pluginPackages: readonly string[];
  /** `[plugins."<type>.<id>"]` tables, checked by each plugin's schema. */
  readonly plugins: Readonly<Record<string, unknown>>;
  /** Where relative plugin package paths resolve from (the config file's folder). */
  readonly configDir: string;
}

export const DEFAULT_ROOT = '/var/lib/berth';
export const DEFAULT_STATE = '/run/berth';
export const DEFAULT_CONFIG_PATH = '/etc/berth/config.toml';
export const defaultAddress = (state: string) => join(state, 'berthd.sock');

export interface Flags {
  readonly config?: string;
  readonly address?: string;
  readonly root?: string;
  readonly state?: string;
  readonly logLevel?: string;
}

const TOP_LEVEL_KEYS = new Set([
  'version',
  'root',
  'state',
  'grpc',
  'debug',
  'disabled_plugins',
  'required_plugins',
  'plugin_packages',
  'plugins',
]);
const GRPC_KEYS = new Set(['address', 'uid', 'gid']);
const DEBUG_KEYS = new Set(['level']);

/** Parse TOML text into a config; flags win over the file, the file over the defaults. */
export function parseConfig(text: string, source: string, flags: Flags = {}): DaemonConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new InvalidArgumentError(`${source}: ${(err as Error).message.split('\n')[0]}`);
  }
  checkKeys(source, '', doc, TOP_LEVEL_KEYS);
  const grpc = table(source, doc, 'grpc');
  checkKeys(source, 'grpc.', grpc, GRPC_KEYS);
  const debug = table(source, doc, 'debug');
  checkKeys(source, 'debug.', debug, DEBUG_KEYS);

  const version = num(source, 'version', doc.version, 2);
  if (version !== 2) throw new InvalidArgumentError(`${source}: version ${version} is not supported (use version = 2)`);
  const root = resolve(flags.root ?? str(source, 'root', doc.root, DEFAULT_ROOT));
  const state = resolve(flags.state ?? str(source, 'state', doc.state, DEFAULT_STATE));
  const logLevel = flags.logLevel ?? str(source, 'debug.level', debug.level, 'info');
  if (!isLogLevel(logLevel)) throw new InvalidArgumentError(`${source}: log level "${logLevel}" is not one of debug, info, warn, error`);
  const uid = num(source, 'grpc.uid', grpc.uid, 0);
  const gid = num(source, 'grpc.gid', grpc.gid, 0);
  return {
    version,
    root,
    state,
    grpc: { address: resolve(flags.address ?? str(source, 'grpc.address', grpc.address, defaultAddress(state))), uid, gid },
    logLevel,
    disabledPlugins: strings(source, 'disabled_plugins', doc.disabled_plugins),
    requiredPlugins: strings(source, 'required_plugins', doc.required_plugins),
    pluginPackages: strings(source, 'plugin_packages', doc.plugin_packages),
    plugins: table(source, doc, 'plugins'),
    configDir: source === '(defaults)' ? process.cwd() : dirname(resolve(source)),
  };
}

/** The config from `--config`, else /etc/berth/config.toml when it exists, else the embedded defaults. */
export async function loadConfig(flags: Flags): Promise<DaemonConfig> {
  const path = flags.config ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !flags.config) return parseConfig('', '(defaults)', flags);
    throw new InvalidArgumentError(`cannot read config ${path}: ${(err as Error).message}`);
  }
  return parseConfig(text, path, flags);
}

function checkKeys(source: string, prefix: string, obj: Record<string, unknown>, known: Set<string>): void {
  for (const key of Object.keys(obj)) {
    if (!known.has(key)) throw new InvalidArgumentError(`${source}: unknown key ${prefix}${key}`);
  }
}

function table(source: string, doc: Record<string, unknown>, key: string): Record<string, unknown> {
  const v = doc[key];
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidArgumentError(`${source}: ${key} must be a table`);
  return v as Record<string, unknown>;
}

function str(source: string, key: string, v: unknown, def: string): string {
  if (v === undefined) return def;
  if (typeof v !== 'string' || v === '') throw new InvalidArgumentError(`${source}: ${key} must be a non-empty string`);
  return v;
}

function num(source: string, key: string, v: unknown, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new InvalidArgumentError(`${source}: ${key} must be a non-negative integer`);
  return v;
}

function strings(source: string, key: string, v: unknown): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new InvalidArgumentError(`${source}: ${key} must be an array of strings`);
  return v as string[];
}
