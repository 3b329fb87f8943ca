import { InvalidArgumentError } from '@berth/plugin-api';
import { hostname } from 'node:os';
import { defaultUnixSpec } from './default-spec.js';
import type { ImageRunConfig } from './image-config.js';
import type { RootfsFiles } from './rootfs-files.js';
import type { RuntimeMount, RuntimeSpec } from './runtime-spec.js';
import {
  withAddedCapabilities,
  withAnnotations,
  withCPUShares,
  withCPUs,
  withDefaultUnixDevices,
  withDroppedCapabilities,
  withEnv,
  withHostFile,
  withHostNamespace,
  withImageConfig,
  withMemoryLimit,
  withMounts,
  withNewPrivileges,
  withProcessArgs,
  withProcessCwd,
  withRootfsReadonly,
  withTTY,
  withTTYSize,
  withUser,
} from './spec-opts.js';

/** What a container's spec is made from, as ctr's `run` and `containers create` flags. */
export interface ContainerSpecOptions {
  /** The namespace and id make the cgroup path `/<namespace>/<id>`. */
  readonly namespace: string;
  readonly id: string;
  /** The image's run config (entrypoint, cmd, env, user, working dir); none for a bare rootfs. */
  readonly image?: ImageRunConfig;
  /** Replaces the image's cmd (after its entrypoint). */
  readonly args?: readonly string[];
  /** `K=V` set over the image's environment; a bare `K` removes it. */
  readonly env?: readonly string[];
  readonly cwd?: string;
  /** `uid`, `uid:gid`, `name`, `name:group`…, over the image's USER; names resolve in the rootfs. */
  readonly user?: string;
  readonly tty?: boolean;
  /** The terminal's first size (`oci.WithTTYSize`), so that the process never sees 0×0. */
  readonly consoleSize?: { readonly width: number; readonly height: number };
  /** Added after the default mounts (see parseMountFlag). */
  readonly mounts?: readonly RuntimeMount[];
  /** Bytes. */
  readonly memoryLimit?: number;
  /** CFS quota in CPUs (0.5: half a CPU). */
  readonly cpus?: number;
  /** CPU shares; ctr's `run` always sets 1024, its `containers create` none. */
  readonly cpuShares?: number;
  /** The host's network namespace, with its /etc/hosts, /etc/resolv.conf and HOSTNAME. */
  readonly netHost?: boolean;
  readonly readonlyRootfs?: boolean;
  readonly capAdd?: readonly string[];
  readonly capDrop?: readonly string[];
  /** Turn off no_new_privileges. */
  readonly allowNewPrivileges?: boolean;
  /** OCI annotations (ctr also copies `--label`s here). */
  readonly annotations?: Readonly<Record<string, string>>;
  /** Where /etc/passwd and /etc/group are read for user names and groups. */
  readonly rootfs?: RootfsFiles;
}

/**
 * The OCI spec ctr would give this container: containerd's defaults
 * (`WithDefaultSpec`, `WithDefaultUnixDevices`), then the options in the
 * order ctr's `NewContainer` applies them.
 */
export async function generateContainerSpec(opts: ContainerSpecOptions): Promise<RuntimeSpec> {
  for (const cap of [...(opts.capAdd ?? []), ...(opts.capDrop ?? [])]) {
    if (!cap.startsWith('CAP_')) throw new InvalidArgumentError(`capabilities must be specified with 'CAP_' prefix: ${cap}`);
  }
  const s = defaultUnixSpec(opts.namespace, opts.id);
  withDefaultUnixDevices(s);
  withEnv(s, opts.env ?? []);
  withMounts(s, opts.mounts ?? []);
  if (opts.image) await withImageConfig(s, opts.image, opts.rootfs);
  if (opts.readonlyRootfs) withRootfsReadonly(s);
  if (opts.args && opts.args.length > 0) withProcessArgs(s, opts.args);
  if (opts.cwd) withProcessCwd(s, opts.cwd);
  if (opts.tty) withTTY(s);
  if (opts.tty && opts.consoleSize) withTTYSize(s, opts.consoleSize.width, opts.consoleSize.height);
  if (opts.netHost) {
    withHostNamespace(s, 'network');
    withHostFile(s, '/etc/hosts');
    withHostFile(s, '/etc/resolv.conf');
    withEnv(s, [`HOSTNAME=${hostname()}`]);
  }
  if (opts.annotations) withAnnotations(s, opts.annotations);
  if (opts.capAdd?.length) withAddedCapabilities(s, opts.capAdd);
  if (opts.capDrop?.length) withDroppedCapabilities(s, opts.capDrop);
  if (opts.cpus !== undefined && opts.cpus > 0) withCPUs(s, opts.cpus);
  if (opts.cpuShares !== undefined && opts.cpuShares > 0) withCPUShares(s, opts.cpuShares);
  if (opts.allowNewPrivileges) withNewPrivileges(s);
  if (opts.memoryLimit !== undefined && opts.memoryLimit > 0) withMemoryLimit(s, opts.memoryLimit);
  // Not a ctr flag (exec has --user): applied last so it wins over the image's USER.
  if (opts.user) await withUser(s, opts.user, opts.rootfs);
  return s;
}

/**
 * ctr's `--mount` value: comma-separated `type=`, `src=`/`source=`,
 * `dst=`/`destination=`, `options=` (colon-separated), e.g.
 * `type=bind,src=/tmp,dst=/host,options=rbind:ro`. Fields may be quoted as CSV.
 */
export function parseMountFlag(value: string): RuntimeMount {
  const mount: { destination: string; type?: string; source?: string; options?: string[] } = { destination: '' };
  for (const field of splitCsv(value)) {
    const eq = field.indexOf('=');
    if (eq < 0) throw new InvalidArgumentError(`invalid mount specification ${JSON.stringify(value)}: expected key=val`);
    const key = field.slice(0, eq);
    const val = field.slice(eq + 1);
    switch (key) {
      case 'type':
        mount.type = val;
        break;
      case 'source':
      case 'src':
        mount.source = val;
        break;
      case 'destination':
      case 'dst':
        mount.destination = val;
        break;
      case 'options':
        mount.options = val.split(':');
        break;
      default:
        throw new InvalidArgumentError(`mount option ${JSON.stringify(key)} not supported`);
    }
  }
  if (!mount.destination.startsWith('/')) {
    throw new InvalidArgumentError(`invalid mount specification ${JSON.stringify(value)}: dst must be an absolute path`);
  }
  return mount;
}

/** One CSV record (Go's encoding/csv): commas split, double quotes group, "" is a quote. */
function splitCsv(line: string): string[] {
  const out: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"' && field === '') quoted = true;
    else if (ch === ',') {
      out.push(field);
      field = '';
    } else field += ch;
  }
  if (quoted) throw new InvalidArgumentError(`invalid mount specification ${JSON.stringify(line)}: unterminated quote`);
  out.push(field);
  return out;
}
