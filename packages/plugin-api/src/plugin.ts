import type { Container } from 'inversify';
import type { Logger } from './logger.js';
import type { Token } from './token.js';

/** containerd's plugin type strings, so tools that filter by type keep working. */
export const PluginType = {
  Content: 'io.containerd.content.v1',
  Snapshotter: 'io.containerd.snapshotter.v1',
  Metadata: 'io.containerd.metadata.v1',
  Differ: 'io.containerd.differ.v1',
  RuntimeV2: 'io.containerd.runtime.v2',
  Grpc: 'io.containerd.grpc.v1',
  Ttrpc: 'io.containerd.ttrpc.v1',
  Event: 'io.containerd.event.v1',
  GC: 'io.containerd.gc.v1',
  Service: 'io.containerd.service.v1',
  Lease: 'io.containerd.lease.v1',
  Internal: 'io.containerd.internal.v1',
  Transfer: 'io.containerd.transfer.v1',
  /** Berth-only kinds. */
  SpecModifier: 'io.berth.spec-modifier.v1',
  ContentSource: 'io.berth.content-source.v1',
} as const;
export type KnownPluginType = (typeof PluginType)[keyof typeof PluginType];

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

/** Values a plugin's TOML table may hold. */
export type ConfigValue = string | number | boolean | readonly string[] | readonly number[] | ConfigTable;
export interface ConfigTable {
  readonly [key: string]: ConfigValue;
}

/**
 * A plugin's configuration: the defaults are also the schema. A key absent
 * from the defaults, or a value of another type than its default, is refused
 * when the daemon starts, naming the plugin and the key. A table whose
 * defaults hold the key `*` is open: it takes any key, each value checked
 * against the `*` template (which is left out of the merged config).
 */
export interface ConfigSchema<C extends ConfigTable> {
  readonly defaults: C;
  /** Extra checks after the merge; throw InvalidArgumentError with a clear message. */
  readonly validate?: (config: C) => void;
}

export interface PluginContext<C extends ConfigTable = ConfigTable> {
  readonly type: string;
  readonly id: string;
  readonly config: C;
  /** `<root>/<type>.<id>`: persistent data of this plugin (created on demand by the plugin). */
  readonly root: string;
  /** `<state>/<type>.<id>`: runtime state, gone after a reboot. */
  readonly state: string;
  readonly log: Logger;
  /** A child container of the daemon's; bind your own classes here. */
  readonly container: Container;
  /** The one provider of a required token. Throws for tokens not in `requires`/`optional`. */
  get<T>(token: Token<T>): T;
  /** The provider of an optional token, if one loaded. */
  tryGet<T>(token: Token<T>): T | undefined;
  /** Every loaded provider of a multi token, by plugin id. */
  getAll<T>(token: Token<T>): ReadonlyMap<string, T>;
  /** An entry shown by `ctr plugins ls --detailed` under exports. */
  export(key: string, value: string): void;
  /** Called on daemon shutdown, in reverse init order. */
  onClose(fn: () => Promise<void> | void): void;
}

export interface PluginDefinition<C extends ConfigTable = ConfigTable, T = unknown> {
  readonly type: string;
  readonly id: string;
  /** Tokens this plugin cannot work without; it initialises after their providers. */
  readonly requires?: readonly Token<unknown>[];
  /** Tokens used when present; ordered after their providers too. */
  readonly optional?: readonly Token<unknown>[];
  /** The token the value returned by init is bound to. */
  readonly provides?: Token<T>;
  readonly config?: ConfigSchema<C>;
  readonly platforms?: readonly Platform[];
  readonly capabilities?: readonly string[];
  /** The @berth/plugin-api version the plugin was built against (set by definePlugin). */
  readonly apiVersion: string;
  init(ctx: PluginContext<C>): Promise<T> | T;
}

/** Keep in step with package.json; checked by a unit test. */
export const PLUGIN_API_VERSION = '0.1.0';

type PluginSpec<C extends ConfigTable, T> = Omit<PluginDefinition<C, T>, 'apiVersion'>;

export function definePlugin<C extends ConfigTable = ConfigTable, T = void>(
  spec: PluginSpec<C, T>,
): PluginDefinition<C, T> {
  return Object.freeze({ ...spec, apiVersion: PLUGIN_API_VERSION });
}

/** What a plugin package default-exports (named in package.json `berth.plugin`). */
export type PluginModule = PluginDefinition<any, any> | readonly PluginDefinition<any, any>[];
