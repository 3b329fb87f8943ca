import { type AnyValue, InvalidArgumentError } from '@berth/plugin-api';

/*
 * The OCI runtime spec (runtime-spec 1.0.2, what containerd 1.6 writes) as
 * JSON: the fields berth's client sets or reads. Other fields pass through
 * untouched (`[key: string]: unknown`), so a spec written by another client
 * survives a round trip.
 */

/** containerd 1.6 vendors runtime-spec 1.0.2-dev and writes this as `ociVersion`. */
export const OCI_VERSION = '1.0.2-dev';

/** The Any types ctr decodes (WIRE-NOTES): a container's spec, an exec's process, Update's resources. */
export const SpecTypeUrl = {
  spec: 'types.containerd.io/opencontainers/runtime-spec/1/Spec',
  process: 'types.containerd.io/opencontainers/runtime-spec/1/Process',
  linuxResources: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources',
} as const;

export interface RuntimeUser {
  uid: number;
  gid: number;
  umask?: number;
  additionalGids?: number[];
  username?: string;
}

export interface RuntimeCapabilities {
  bounding?: string[];
  effective?: string[];
  inheritable?: string[];
  permitted?: string[];
  ambient?: string[];
}

export interface RuntimeRlimit {
  type: string;
  hard: number;
  soft: number;
}

export interface RuntimeProcess {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: RuntimeUser;
  args?: string[];
  commandLine?: string;
  env?: string[];
  cwd: string;
  capabilities?: RuntimeCapabilities;
  rlimits?: RuntimeRlimit[];
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  oomScoreAdj?: number;
  selinuxLabel?: string;
  [key: string]: unknown;
}

export interface RuntimeMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface RuntimeDeviceCgroup {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

export interface RuntimeLinuxResources {
  devices?: RuntimeDeviceCgroup[];
  memory?: { limit?: number; reservation?: number; swap?: number; kernel?: number; swappiness?: number; [key: string]: unknown };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string; [key: string]: unknown };
  pids?: { limit: number };
  [key: string]: unknown;
}

export interface RuntimeNamespace {
  type: string;
  path?: string;
}

export interface RuntimeLinux {
  uidMappings?: { containerID: number; hostID: number; size: number }[];
  gidMappings?: { containerID: number; hostID: number; size: number }[];
  resources?: RuntimeLinuxResources;
  cgroupsPath?: string;
  namespaces?: RuntimeNamespace[];
  maskedPaths?: string[];
  readonlyPaths?: string[];
  [key: string]: unknown;
}

export interface RuntimeSpec {
  ociVersion: string;
  process?: RuntimeProcess;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: RuntimeMount[];
  annotations?: Record<string, string>;
  linux?: RuntimeLinux;
  [key: string]: unknown;
}

/** The spec's process, made (as root in /) when absent. */
export function processOf(s: RuntimeSpec): RuntimeProcess {
  s.process ??= { user: { uid: 0, gid: 0 }, cwd: '/' };
  return s.process;
}

function jsonAny<T>(typeUrl: string, value: T): AnyValue {
  return { typeUrl, value: Buffer.from(JSON.stringify(value)) };
}

function fromJsonAny<T>(any: AnyValue | undefined, typeUrl: string, what: string): T {
  if (!any) throw new InvalidArgumentError(`${what}: none set`);
  if (any.typeUrl !== typeUrl) throw new InvalidArgumentError(`${what}: type ${any.typeUrl}, want ${typeUrl}`);
  try {
    return JSON.parse(Buffer.from(any.value).toString('utf8')) as T;
  } catch (err) {
    throw new InvalidArgumentError(`${what}: malformed JSON: ${(err as Error).message}`);
  }
}

/*
 * Field order of runtime-spec's Go structs, so the JSON we store reads like
 * the JSON containerd's client stores (`ctr containers info` shows it as is).
 * Fields not listed keep their place after these.
 */
const ORDER: Record<string, readonly string[]> = {
  spec: ['ociVersion', 'process', 'root', 'hostname', 'mounts', 'hooks', 'annotations', 'linux'],
  process: ['terminal', 'consoleSize', 'user', 'args', 'commandLine', 'env', 'cwd', 'capabilities', 'rlimits', 'noNewPrivileges', 'apparmorProfile', 'oomScoreAdj', 'selinuxLabel'],
  user: ['uid', 'gid', 'umask', 'additionalGids', 'username'],
  linux: ['uidMappings', 'gidMappings', 'sysctl', 'resources', 'cgroupsPath', 'namespaces', 'devices', 'seccomp', 'rootfsPropagation', 'maskedPaths', 'readonlyPaths', 'mountLabel', 'intelRdt', 'personality'],
  resources: ['devices', 'memory', 'cpu', 'blockIO', 'hugepageLimits', 'network', 'pids', 'rdma', 'unified'],
  memory: ['limit', 'reservation', 'swap', 'kernel', 'kernelTCP', 'swappiness', 'disableOOMKiller', 'useHierarchy'],
  cpu: ['shares', 'quota', 'period', 'realtimeRuntime', 'realtimePeriod', 'cpus', 'mems'],
};

function ordered(value: unknown, order: readonly string[] | undefined): unknown {
  if (!order || typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const obj = value as Record<string, unknown>;
  const keys = [...order.filter((k) => k in obj), ...Object.keys(obj).filter((k) => !order.includes(k))];
  return Object.fromEntries(keys.map((k) => [k, ordered(obj[k], ORDER[k])]));
}

/** The spec as a container carries it: an Any of JSON bytes, as containerd's typeurl marshals it. */
export const specToAny = (spec: RuntimeSpec): AnyValue => jsonAny(SpecTypeUrl.spec, ordered(spec, ORDER.spec));
export const specFromAny = (any: AnyValue | undefined): RuntimeSpec => fromJsonAny<RuntimeSpec>(any, SpecTypeUrl.spec, 'container spec');
/** An exec's process, as Tasks.Exec takes it. */
export const processToAny = (process: RuntimeProcess): AnyValue => jsonAny(SpecTypeUrl.process, ordered(process, ORDER.process));
/** Resources for Tasks.Update. */
export const resourcesToAny = (resources: RuntimeLinuxResources): AnyValue => jsonAny(SpecTypeUrl.linuxResources, resources);
