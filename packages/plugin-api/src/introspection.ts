import type { Platform } from './plugin.js';
import { token } from './token.js';

export type PluginStatus =
  | { readonly state: 'ok' }
  | { readonly state: 'skipped'; readonly reason: string }
  | { readonly state: 'error'; readonly message: string };

/** One plugin as `ctr plugins ls` shows it. */
export interface PluginInfo {
  readonly type: string;
  readonly id: string;
  /** Plugin types this one requires, as containerd reports them. */
  readonly requires: readonly string[];
  readonly platforms: readonly Platform[];
  readonly exports: Readonly<Record<string, string>>;
  readonly capabilities: readonly string[];
  readonly status: PluginStatus;
  /** The npm package it came from. */
  readonly package?: string;
}

export interface ServerInfo {
  readonly uuid: string;
  readonly pid: number;
  readonly pidns: number;
}

export interface Introspection {
  /** Plugins matching any of the filters; as in containerd, `type` and `id` are the filterable fields. */
  plugins(filters: readonly string[]): PluginInfo[];
  server(): Promise<ServerInfo>;
}
export const Introspection = token<Introspection>('Introspection');

/** Read-only view of the registry, bound by the core before any plugin runs. */
export interface PluginRegistryView {
  list(): readonly PluginInfo[];
}
export const PluginRegistryView = token<PluginRegistryView>('PluginRegistryView');
