import {
  type ConfigTable,
  errorMessage,
  InvalidArgumentError,
  AlreadyExistsError,
  type Logger,
  type PluginContext,
  type PluginDefinition,
  type PluginInfo,
  type PluginRegistryView,
  type PluginStatus,
  SkipPlugin,
  type Token,
} from '@berth/plugin-api';
import { Container } from 'inversify';
import { join } from 'node:path';
import { resolvePluginConfig } from './plugin-config.js';

export interface RegistryOptions {
  readonly root: string;
  readonly state: string;
  readonly log: Logger;
  /** `[plugins."<type>.<id>"]` tables from the daemon config. */
  readonly configs?: Readonly<Record<string, unknown>>;
  /** `type.id` addresses not to load (containerd's `disabled_plugins`). */
  readonly disabled?: readonly string[];
}

interface Entry {
  readonly def: PluginDefinition<ConfigTable, unknown>;
  readonly address: string;
  readonly pkg: string | undefined;
  status: PluginStatus;
  exports: Record<string, string>;
}

/** A package that could not be loaded at all still shows in `ctr plugins ls`. */
const PACKAGE_PLUGIN_TYPE = 'io.berth.package.v1';

/**
 * The plugin registry: validates definitions, orders them by what they
 * require, initialises each in a child DI container and records the outcome
 * (ok / skipped / error) as containerd's introspection reports it. A plugin
 * that fails never stops the others, only those that require it.
 */
export class PluginRegistry implements PluginRegistryView {
  readonly container = new Container({ defaultScope: 'Singleton' });
  private readonly entries = new Map<string, Entry>();
  private readonly failures: Entry[] = [];
  /** token key → plugin id → instance, for loaded plugins and presets. */
  private readonly instances = new Map<symbol, Map<string, unknown>>();
  private readonly closers: Array<{ address: string; fn: () => Promise<void> | void }> = [];

  constructor(private readonly opts: RegistryOptions) {}

  /** Bind a value that no plugin provides (daemon facts, the registry view). */
  preset<T>(token: Token<T>, value: T): void {
    this.instances.set(token.key, new Map([['', value]]));
    this.container.bind(token.key).toConstantValue(value);
  }

  /** Throws InvalidArgument / AlreadyExists for definitions that can never load. */
  register(def: PluginDefinition<any, any>, pkg?: string): void {
    if (!def || typeof def !== 'object') throw new InvalidArgumentError(`plugin from ${pkg ?? 'unknown package'}: not a plugin definition`);
    if (!def.type) throw new InvalidArgumentError(`plugin from ${pkg ?? 'built-in'}: empty type`);
    if (!def.id) throw new InvalidArgumentError(`plugin of type ${def.type}: empty id`);
    if (typeof def.init !== 'function') throw new InvalidArgumentError(`plugin ${def.type}.${def.id}: no init function`);
    const address = `${def.type}.${def.id}`;
    if (this.entries.has(address)) throw new AlreadyExistsError(`plugin ${address}: registered twice`);
    const needs = [...(def.requires ?? []), ...(def.optional ?? [])];
    if (def.provides && needs.some((t) => t.key === def.provides?.key)) {
      throw new InvalidArgumentError(`plugin ${address}: requires ${def.provides.name}, which it provides itself`);
    }
    this.entries.set(address, { def, address, pkg, status: { state: 'ok' }, exports: {} });
  }

  /** Record a package or plugin that failed before it could register. */
  recordFailure(name: string, message: string, pkg?: string): void {
    const def = { type: PACKAGE_PLUGIN_TYPE, id: name, apiVersion: '', init: () => undefined };
    this.failures.push({ def, address: `${def.type}.${name}`, pkg, status: { state: 'error', message }, exports: {} });
  }

  /**
   * Init order: every plugin after the providers of what it requires.
   * Plugins on a dependency cycle are returned apart, with the cycle.
   */
  order(): { ordered: Entry[]; cyclic: Map<Entry, string> } {
    const active = [...this.entries.values()].filter((e) => !this.opts.disabled?.includes(e.address));
    const providers = new Map<symbol, Entry[]>();
    for (const e of active) {
      if (!e.def.provides) continue;
      const list = providers.get(e.def.provides.key) ?? [];
      list.push(e);
      providers.set(e.def.provides.key, list);
    }
    const depsOf = (e: Entry) =>
      [...(e.def.requires ?? []), ...(e.def.optional ?? [])].flatMap((t) => providers.get(t.key) ?? []);

    const ordered: Entry[] = [];
    const cyclic = new Map<Entry, string>();
    const state = new Map<Entry, 'visiting' | 'done'>();
    const visit = (e: Entry, path: Entry[]): void => {
      const s = state.get(e);
      if (s === 'done') return;
      if (s === 'visiting') {
        const cycle = [...path.slice(path.indexOf(e)), e].map((x) => x.address).join(' -> ');
        for (const member of path.slice(path.indexOf(e))) cyclic.set(member, cycle);
        return;
      }
      state.set(e, 'visiting');
      for (const dep of depsOf(e)) visit(dep, [...path, e]);
      state.set(e, 'done');
      if (!cyclic.has(e)) ordered.push(e);
    };
    // Registration order breaks ties, so the result is stable.
    for (const e of active) visit(e, []);
    // A plugin depending on a cyclic one cannot load either; init reports it as missing.
    return { ordered, cyclic };
  }

  async initAll(): Promise<void> {
    const { ordered, cyclic } = this.order();
    for (const [entry, cycle] of cyclic) entry.status = { state: 'error', message: `dependency cycle: ${cycle}` };
    for (const entry of ordered) await this.initOne(entry);
  }

  private async initOne(entry: Entry): Promise<void> {
    const { def, address } = entry;
    const log = this.opts.log.child({ plugin: address });
    const missing = (def.requires ?? []).filter((t) => !this.instances.get(t.key)?.size);
    if (missing.length > 0) {
      entry.status = { state: 'error', message: `requires ${missing.map((t) => t.name).join(', ')}, which no loaded plugin provides` };
      log.warn('plugin not loaded', { reason: entry.status.message });
      return;
    }
    try {
      const config = resolvePluginConfig(address, def.config, this.opts.configs?.[address]);
      const value = await def.init(this.contextFor(entry, config, log));
      if (def.provides) this.bind(def.provides, def.id, value);
      entry.status = { state: 'ok' };
      log.debug('plugin loaded');
    } catch (err) {
      if (err instanceof SkipPlugin || (err instanceof Error && err.name === 'SkipPlugin')) {
        entry.status = { state: 'skipped', reason: (err as SkipPlugin).reason ?? err.message };
        log.info('plugin skipped', { reason: entry.status.reason });
      } else {
        entry.status = { state: 'error', message: errorMessage(err) };
        log.error('plugin failed to load', { error: entry.status.message });
      }
    }
  }

  private bind(token: Token<unknown>, id: string, value: unknown): void {
    const byId = this.instances.get(token.key) ?? new Map<string, unknown>();
    if (!token.multi && byId.size > 0) {
      throw new AlreadyExistsError(`${token.name} is already provided by ${[...byId.keys()].join(', ')}`);
    }
    byId.set(id, value);
    this.instances.set(token.key, byId);
    if (!token.multi) this.container.bind(token.key).toConstantValue(value);
  }

  private contextFor(entry: Entry, config: ConfigTable, log: Logger): PluginContext<ConfigTable> {
    const { def, address } = entry;
    const declared = new Set([...(def.requires ?? []), ...(def.optional ?? [])].map((t) => t.key));
    const check = (t: Token<unknown>) => {
      if (!declared.has(t.key)) throw new Error(`plugin ${address} uses ${t.name} without declaring it in requires or optional`);
    };
    const one = <T>(t: Token<T>): T | undefined => {
      check(t);
      const byId = this.instances.get(t.key);
      if (!byId || byId.size === 0) return undefined;
      if (byId.size > 1) throw new Error(`${t.name} has several providers (${[...byId.keys()].join(', ')}); use getAll`);
      return byId.values().next().value as T;
    };
    return {
      type: def.type,
      id: def.id,
      config,
      root: join(this.opts.root, address),
      state: join(this.opts.state, address),
      log,
      container: new Container({ parent: this.container, defaultScope: 'Singleton' }),
      get: <T>(t: Token<T>): T => {
        const v = one(t);
        if (v === undefined) throw new Error(`${t.name} is not available to ${address}`);
        return v;
      },
      tryGet: one,
      getAll: <T>(t: Token<T>) => {
        check(t);
        return (this.instances.get(t.key) ?? new Map()) as ReadonlyMap<string, T>;
      },
      export: (key, value) => {
        entry.exports[key] = value;
      },
      onClose: (fn) => {
        this.closers.push({ address, fn });
      },
    };
  }

  /** The provider of a single token, for the daemon's own wiring. */
  lookup<T>(token: Token<T>): T | undefined {
    return this.instances.get(token.key)?.values().next().value as T | undefined;
  }

  /** Loaded providers of a token with their plugin addresses, in init order. */
  providers<T>(token: Token<T>): Array<{ address: string; value: T }> {
    const byId = this.instances.get(token.key);
    if (!byId) return [];
    return [...this.entries.values()]
      .filter((e) => e.def.provides?.key === token.key && e.status.state === 'ok' && byId.has(e.def.id))
      .map((e) => ({ address: e.address, value: byId.get(e.def.id) as T }));
  }

  /** Mark a loaded plugin as failed after init (e.g. its gRPC service could not be served). */
  fail(address: string, message: string): void {
    const entry = this.entries.get(address);
    if (entry) entry.status = { state: 'error', message };
  }

  list(): PluginInfo[] {
    const typesProviding = (t: Token<unknown>) => {
      const types = [...this.entries.values()].filter((e) => e.def.provides?.key === t.key).map((e) => e.def.type);
      return types.length > 0 ? types : [t.name];
    };
    return [...this.failures, ...this.entries.values()]
      .filter((e) => !this.opts.disabled?.includes(e.address))
      .map((e) => ({
        type: e.def.type,
        id: e.def.id,
        requires: [...new Set((e.def.requires ?? []).flatMap(typesProviding))],
        platforms: e.def.platforms ?? [],
        exports: { ...e.exports },
        capabilities: e.def.capabilities ?? [],
        status: e.status,
        ...(e.pkg ? { package: e.pkg } : {}),
      }));
  }

  /** Close plugins in reverse init order; one failing close does not stop the rest. */
  async close(): Promise<void> {
    for (const { address, fn } of this.closers.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        this.opts.log.error('plugin close failed', { plugin: address, error: errorMessage(err) });
      }
    }
  }
}
