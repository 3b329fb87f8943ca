import {
  InvalidArgumentError,
  type OciSpec,
  type RequestContext,
  type SpecModifier,
  type SpecModifierInput,
} from '@berth/plugin-api';
import { realpathSync } from 'node:fs';
import { isAbsolute, resolve, sep } from 'node:path';

export interface HostPolicy {
  /** Host paths containers may bind-mount (or use as their root); empty: any. */
  readonly allowedHostPaths: readonly string[];
  /** Capabilities no container process may hold (`CAP_SYS_ADMIN` or `SYS_ADMIN`). */
  readonly forbiddenCapabilities: readonly string[];
}

const CONFIG = 'plugins."io.containerd.runtime.v2.task"';
const CAPABILITY_SETS = ['bounding', 'effective', 'inheritable', 'permitted', 'ambient'] as const;

const capabilityName = (cap: string) => {
  const upper = cap.trim().toUpperCase();
  return upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
};

/** The path with symlinks resolved as far as it exists, so a link cannot lead out of an allowed folder. */
function realPath(path: string): string {
  const normal = resolve(path);
  try {
    return realpathSync(normal);
  } catch {
    return normal;
  }
}

const within = (path: string, dir: string) => dir === sep || path === dir || path.startsWith(dir + sep);

const isBind = (m: Record<string, unknown>) =>
  m.type === 'bind' || (Array.isArray(m.options) && m.options.some((o) => o === 'bind' || o === 'rbind'));

/**
 * berthd's host policy from its config, as a spec modifier: a container may
 * bind-mount only host paths under `allowed_host_paths` (when the list is not
 * empty; a spec rooted in a host directory counts too) and its processes
 * (exec included) may hold no capability in `forbidden_capabilities`.
 * It runs first, so it judges what the client asked for, not what trusted
 * modifiers add after it.
 */
export class HostPolicyModifier implements SpecModifier {
  readonly order = -1000;
  private readonly forbidden: ReadonlySet<string>;

  constructor(private readonly policy: HostPolicy) {
    this.forbidden = new Set(policy.forbiddenCapabilities.map(capabilityName));
  }

  get enabled(): boolean {
    return this.policy.allowedHostPaths.length > 0 || this.forbidden.size > 0;
  }

  modify(_ctx: RequestContext, input: SpecModifierInput, spec: OciSpec): OciSpec {
    const what = `container "${input.containerId}"`;
    if (this.policy.allowedHostPaths.length > 0) {
      const allowed = this.policy.allowedHostPaths.map(realPath);
      const root = spec.root as { path?: unknown } | undefined;
      if (input.rootfs.length === 0 && typeof root?.path === 'string' && isAbsolute(root.path)) {
        this.checkHostPath(what, 'root', root.path, allowed);
      }
      for (const mount of (Array.isArray(spec.mounts) ? spec.mounts : []) as Record<string, unknown>[]) {
        if (!isBind(mount)) continue;
        const source = String(mount.source ?? '');
        const target = String(mount.destination ?? '');
        if (!isAbsolute(source)) {
          throw new InvalidArgumentError(`${what}: bind mount of ${JSON.stringify(source)} on ${target}: the source must be an absolute host path`);
        }
        this.checkHostPath(what, `bind mount on ${target}`, source, allowed);
      }
    }
    this.checkCapabilities(what, spec.process as Record<string, unknown> | undefined);
    return spec;
  }

  modifyExecProcess(
    _ctx: RequestContext,
    input: SpecModifierInput & { readonly execId: string },
    process: Record<string, unknown>,
  ): Record<string, unknown> {
    this.checkCapabilities(`exec "${input.execId}" in container "${input.containerId}"`, process);
    return process;
  }

  private checkHostPath(what: string, use: string, path: string, allowed: readonly string[]): void {
    const real = realPath(path);
    if (allowed.some((dir) => within(real, dir))) return;
    throw new InvalidArgumentError(
      `${what}: host path ${path}${real !== resolve(path) ? ` (${real})` : ''} for the ${use} is not allowed by berthd's configuration ` +
        `(${CONFIG}.allowed_host_paths: ${this.policy.allowedHostPaths.join(', ')})`,
    );
  }

  private checkCapabilities(what: string, process: Record<string, unknown> | undefined): void {
    if (this.forbidden.size === 0) return;
    const caps = (process?.capabilities ?? {}) as Record<string, unknown>;
    for (const set of CAPABILITY_SETS) {
      const list = caps[set];
      if (!Array.isArray(list)) continue;
      for (const cap of list) {
        if (typeof cap === 'string' && this.forbidden.has(capabilityName(cap))) {
          throw new InvalidArgumentError(
            `${what}: capability ${capabilityName(cap)} (${set}) is forbidden by berthd's configuration (${CONFIG}.forbidden_capabilities)`,
          );
        }
      }
    }
  }
}
