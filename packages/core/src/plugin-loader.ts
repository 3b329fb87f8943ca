import { errorMessage, PLUGIN_API_VERSION, type PluginDefinition } from '@berth/plugin-api';
import { access, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import semver from 'semver';
import type { PluginRegistry } from './registry.js';

const API_PACKAGE = '@berth/plugin-api';

export interface LoadedPackage {
  readonly name: string;
  readonly definitions: PluginDefinition<any, any>[];
}

/**
 * Load a plugin package the way npm installed it: `berth.plugin` in its
 * package.json names the module whose default export is one definition or
 * an array. The package must declare a `@berth/plugin-api` range (peer or
 * regular dependency) that this daemon's plugin API satisfies.
 *
 * `spec` is a package name, resolved from each folder of `resolveFrom` in
 * turn, or a path to the package folder (relative to the first).
 */
export async function loadPluginPackage(spec: string, resolveFrom: readonly string[]): Promise<LoadedPackage> {
  const dir = await packageDir(spec, resolveFrom);
  const manifest = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as {
    name?: string;
    berth?: { plugin?: string };
    peerDependencies?: Record<string, string>;
    dependencies?: Record<string, string>;
  };
  const name = manifest.name ?? spec;
  const entry = manifest.berth?.plugin;
  if (!entry) throw new Error(`package ${name} has no "berth.plugin" entry in package.json`);
  const range = manifest.peerDependencies?.[API_PACKAGE] ?? manifest.dependencies?.[API_PACKAGE];
  if (!range) throw new Error(`package ${name} does not declare ${API_PACKAGE} in peerDependencies`);
  if (!semver.satisfies(PLUGIN_API_VERSION, range, { includePrerelease: true })) {
    throw new Error(`package ${name} needs ${API_PACKAGE} ${range}, but this berthd provides ${PLUGIN_API_VERSION}`);
  }
  const mod = (await import(pathToFileURL(join(dir, entry)).href)) as { default?: unknown };
  const exported = mod.default;
  if (exported === undefined) throw new Error(`package ${name}: ${entry} has no default export`);
  const definitions = (Array.isArray(exported) ? exported : [exported]) as PluginDefinition<any, any>[];
  return { name, definitions };
}

async function packageDir(spec: string, resolveFrom: readonly string[]): Promise<string> {
  if (isAbsolute(spec) || spec.startsWith('.')) return resolve(resolveFrom[0] ?? process.cwd(), spec);
  for (const base of resolveFrom) {
    const require = createRequire(join(base, 'noop.js'));
    // Look on the lookup paths directly: packages whose "exports" hide package.json still resolve.
    for (const dir of require.resolve.paths(spec) ?? []) {
      const candidate = join(dir, spec);
      try {
        await access(join(candidate, 'package.json'));
        return candidate;
      } catch {
        // try the next lookup path
      }
    }
  }
  throw new Error(`plugin package ${spec} not found (looked from ${resolveFrom.join(', ')})`);
}

/**
 * Load and register every package; a package that fails to load or
 * register is recorded as an error plugin and the rest go on.
 */
export async function registerPackages(
  registry: PluginRegistry,
  specs: readonly string[],
  resolveFrom: readonly string[],
): Promise<void> {
  for (const spec of specs) {
    let loaded: LoadedPackage;
    try {
      loaded = await loadPluginPackage(spec, resolveFrom);
    } catch (err) {
      registry.recordFailure(spec, errorMessage(err), spec);
      continue;
    }
    for (const def of loaded.definitions) {
      try {
        registry.register(def, loaded.name);
      } catch (err) {
        registry.recordFailure(`${loaded.name}#${def?.id ?? '?'}`, errorMessage(err), loaded.name);
      }
    }
  }
}
