import { InvalidArgumentError } from '@berth/plugin-api';
import { DEFAULT_UNIX_ENV, defaultUnixDevices } from './default-spec.js';
import type { ImageRunConfig } from './image-config.js';
import type { RootfsFiles } from './rootfs-files.js';
import { processOf, type RuntimeCapabilities, type RuntimeMount, type RuntimeSpec } from './runtime-spec.js';
import { applyAdditionalGids, applyUser } from './user.js';

/*
 * containerd's oci.SpecOpts that ctr uses, one function each, with the same
 * effect on the spec (oci/spec_opts.go, spec_opts_linux.go).
 */

const linuxOf = (s: RuntimeSpec) => (s.linux ??= {});
const resourcesOf = (s: RuntimeSpec) => (linuxOf(s).resources ??= {});

/**
 * containerd's replaceOrAppendEnvValues: each `K=V` replaces K in `defaults`
 * or is appended; a bare `K` removes K.
 */
export function replaceOrAppendEnv(defaults: readonly string[], overrides: readonly string[]): string[] {
  const results: (string | undefined)[] = [...defaults];
  const index = new Map<string, number>();
  defaults.forEach((e, i) => {
    index.set(e.split('=')[0] ?? e, i);
  });
  for (const value of overrides) {
    const eq = value.indexOf('=');
    if (eq < 0) {
      const i = index.get(value);
      if (i !== undefined) results[i] = undefined;
      continue;
    }
    const i = index.get(value.slice(0, eq));
    if (i !== undefined) results[i] = value;
    else results.push(value);
  }
  return results.filter((e): e is string => !!e);
}

/** `oci.WithEnv`. */
export function withEnv(s: RuntimeSpec, env: readonly string[]): void {
  if (env.length === 0) return;
  const p = processOf(s);
  p.env = replaceOrAppendEnv(p.env ?? [], env);
}

/** `oci.WithProcessArgs`. */
export function withProcessArgs(s: RuntimeSpec, args: readonly string[]): void {
  const p = processOf(s);
  p.args = [...args];
  delete p.commandLine;
}

/** `oci.WithProcessCwd`. */
export function withProcessCwd(s: RuntimeSpec, cwd: string): void {
  processOf(s).cwd = cwd;
}

/** `oci.WithTTY`: a terminal, and TERM=xterm. */
export function withTTY(s: RuntimeSpec): void {
  const p = processOf(s);
  p.terminal = true;
  if (s.linux) p.env = [...(p.env ?? []), 'TERM=xterm'];
}

/** `oci.WithTTYSize`. */
export function withTTYSize(s: RuntimeSpec, width: number, height: number): void {
  processOf(s).consoleSize = { height, width };
}

/** `oci.WithMounts`: appended after the defaults. */
export function withMounts(s: RuntimeSpec, mounts: readonly RuntimeMount[]): void {
  s.mounts = [...(s.mounts ?? []), ...mounts.map((m) => ({ ...m, ...(m.options ? { options: [...m.options] } : {}) }))];
}

/** `oci.WithHostNamespace`: join the host's namespace of this type (drop ours). */
export function withHostNamespace(s: RuntimeSpec, type: string): void {
  const linux = linuxOf(s);
  linux.namespaces = (linux.namespaces ?? []).filter((n) => n.type !== type);
}

/** `oci.WithHostHostsFile` and `oci.WithHostResolvconf`: the host's files, read-only. */
export function withHostFile(s: RuntimeSpec, path: '/etc/hosts' | '/etc/resolv.conf' | '/etc/localtime'): void {
  withMounts(s, [{ destination: path, type: 'bind', source: path, options: ['rbind', 'ro'] }]);
}

/** `oci.WithDefaultUnixDevices`. */
export function withDefaultUnixDevices(s: RuntimeSpec): void {
  const r = resourcesOf(s);
  r.devices = [...(r.devices ?? []), ...defaultUnixDevices()];
}

/** `oci.WithMemoryLimit` (bytes). */
export function withMemoryLimit(s: RuntimeSpec, limit: number): void {
  if (!s.linux) return;
  const r = resourcesOf(s);
  r.memory = { ...r.memory, limit };
}

/** `oci.WithCPUCFS`: `quota` microseconds of CPU time per `period`. */
export function withCPUCFS(s: RuntimeSpec, quota: number, period: number): void {
  const r = resourcesOf(s);
  r.cpu = { ...r.cpu, quota, period };
}

/** `oci.WithCPUShares`. */
export function withCPUShares(s: RuntimeSpec, shares: number): void {
  const r = resourcesOf(s);
  r.cpu = { ...r.cpu, shares };
}

/** ctr's `--cpus N`: quota N × 100000 µs per 100000 µs period. */
export function withCPUs(s: RuntimeSpec, cpus: number): void {
  if (!(cpus > 0)) throw new InvalidArgumentError(`cpus must be positive, not ${cpus}`);
  withCPUCFS(s, Math.trunc(cpus * 100000), 100000);
}

/** `oci.WithAnnotations`: added to (or replacing) those present. */
export function withAnnotations(s: RuntimeSpec, annotations: Readonly<Record<string, string>>): void {
  if (Object.keys(annotations).length === 0) return;
  s.annotations = { ...s.annotations, ...annotations };
}

/** `oci.WithRootFSReadonly`. */
export function withRootfsReadonly(s: RuntimeSpec): void {
  s.root = { path: s.root?.path ?? 'rootfs', readonly: true };
}

function capabilitiesOf(s: RuntimeSpec): RuntimeCapabilities {
  const p = processOf(s);
  p.capabilities ??= {};
  return p.capabilities;
}

/** `oci.WithAddedCapabilities` (names with the CAP_ prefix). */
export function withAddedCapabilities(s: RuntimeSpec, caps: readonly string[]): void {
  const c = capabilitiesOf(s);
  for (const cap of caps) {
    for (const key of ['bounding', 'effective', 'permitted'] as const) {
      const list = c[key] ?? [];
      if (!list.includes(cap)) list.push(cap);
      c[key] = list;
    }
  }
}

/** `oci.WithDroppedCapabilities`. */
export function withDroppedCapabilities(s: RuntimeSpec, caps: readonly string[]): void {
  const c = capabilitiesOf(s);
  for (const key of ['bounding', 'effective', 'permitted'] as const) c[key] = (c[key] ?? []).filter((x) => !caps.includes(x));
}

/** `oci.WithNewPrivileges`: turn off no_new_privileges. */
export function withNewPrivileges(s: RuntimeSpec): void {
  processOf(s).noNewPrivileges = false;
}

/** `oci.WithUser` (see applyUser). */
export function withUser(s: RuntimeSpec, user: string, rootfs: RootfsFiles | undefined): Promise<void> {
  return applyUser(s, user, rootfs);
}

/**
 * `oci.WithImageConfigArgs` for Linux: the image's environment under the
 * spec's, entrypoint + (args or cmd), working dir, and its user with
 * supplementary groups from the rootfs.
 */
export async function withImageConfig(
  s: RuntimeSpec,
  config: ImageRunConfig,
  rootfs: RootfsFiles | undefined,
  args: readonly string[] = [],
): Promise<void> {
  const p = processOf(s);
  const defaults = config.Env && config.Env.length > 0 ? config.Env : DEFAULT_UNIX_ENV;
  p.env = replaceOrAppendEnv(defaults, p.env ?? []);
  p.args = [...(config.Entrypoint ?? []), ...(args.length > 0 ? args : (config.Cmd ?? []))];
  p.cwd = config.WorkingDir || '/';
  if (config.User) {
    await applyUser(s, config.User, rootfs);
    await applyAdditionalGids(s, String(p.user.uid), rootfs);
  } else {
    await applyAdditionalGids(s, 'root', rootfs);
  }
}
