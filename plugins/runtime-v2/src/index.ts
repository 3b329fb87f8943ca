import {
  DaemonInfo,
  definePlugin,
  EventExchange,
  PluginType,
  SkipPlugin,
  SpecModifier,
  TaskManager,
  ttrpcAddressOf,
} from '@berth/plugin-api';
import { existsSync } from 'node:fs';
import { type HostPolicy, HostPolicyModifier } from './host-policy.js';
import { encodeRuncOptions, RUNC_OPTION_DEFAULTS, type RuncOptionsConfig } from './runtime-options.js';
import { RuntimeResolver } from './runtime-resolver.js';
import { ShimTaskManager } from './shim-task-manager.js';

export { Bundle, BundleFile } from './bundle.js';
export { type HostPolicy, HostPolicyModifier } from './host-policy.js';
export { encodeRuncOptions, mergeRuntimeOptions, RUNC_OPTIONS_TYPE } from './runtime-options.js';
export { BERTH_SHIM, RUNC_V2, RuntimeResolver, shimBinaryName } from './runtime-resolver.js';
export { deleteShim, type ShimCommand, startShim } from './shim-binary.js';
export { ShimTaskManager, type ShimTaskManagerOptions } from './shim-task-manager.js';

// A type, not an interface: config tables need its implicit index signature.
type RuntimeConfig = {
  readonly binary: string;
  readonly options: RuncOptionsConfig;
};

const defaults = {
  /** `[…runtimes."<name>"]`: binary (absolute path or name) and runc options, by runtime name. */
  runtimes: { '*': { binary: '', options: RUNC_OPTION_DEFAULTS } } as Record<string, RuntimeConfig>,
  /** Host paths containers may bind-mount; empty: any. */
  allowed_host_paths: [] as readonly string[],
  /** Capabilities refused to every container process. */
  forbidden_capabilities: [] as readonly string[],
  shim_start_timeout_ms: 30_000,
  /**
   * How long berth's group shim stays up once its last container is gone, so
   * the next `ctr run` in the namespace reuses it instead of starting Node
   * again. 0 exits at once, as under containerd.
   */
  shim_idle_ms: 30_000,
  /**
   * While no shim berthd started lives, keep one spare berth shim (a Node
   * process that has loaded its code and waits, ~53 MiB resident), so the
   * first container after an idle spell skips Node's start-up. Only when
   * berth's shim serves io.containerd.runc.v2. false: none.
   */
  spare_shim: true,
};

/** The host policy of each task manager this package made, for its spec modifier. */
const policies = new WeakMap<object, HostPolicy>();

/**
 * containerd's runtime v2 (`io.containerd.runtime.v2.task`): bundles under
 * `<state>/io.containerd.runtime.v2.task/<ns>/<id>`, shims started and
 * driven over ttrpc, live shims reconnected at start-up.
 */
export const runtimeV2Plugin = definePlugin({
  type: PluginType.RuntimeV2,
  id: 'task',
  requires: [DaemonInfo, EventExchange],
  provides: TaskManager,
  config: { defaults },
  async init(ctx) {
    const info = ctx.get(DaemonInfo);
    const runtimes = ctx.config.runtimes;
    const resolver = new RuntimeResolver({ runtimes });
    const configured = new Map(Object.entries(runtimes).map(([name, entry]) => [name, encodeRuncOptions(entry.options)]));
    const ttrpcAddress = ttrpcAddressOf(info.address);
    const manager = new ShimTaskManager({
      stateRoot: ctx.state,
      workRoot: ctx.root,
      grpcAddress: info.address,
      ttrpcAddress,
      // containerd 1.6 shims publish over TTRPC_ADDRESS; berthd has no `publish` command to offer.
      publishBinary: existsSync('/bin/true') ? '/bin/true' : '/usr/bin/true',
      resolver,
      configuredOptions: (runtime) => configured.get(runtime),
      events: ctx.get(EventExchange),
      log: ctx.log,
      timeouts: { start: ctx.config.shim_start_timeout_ms },
      shimIdleMs: ctx.config.shim_idle_ms,
      spareShim: ctx.config.spare_shim,
    });
    policies.set(manager, {
      allowedHostPaths: ctx.config.allowed_host_paths,
      forbiddenCapabilities: ctx.config.forbidden_capabilities,
    });
    await manager.load();
    ctx.export('state', ctx.state);
    ctx.export('ttrpc', ttrpcAddress);
    ctx.onClose(() => manager.close());
    return manager;
  },
});

/**
 * The host policy of `[plugins."io.containerd.runtime.v2.task"]`
 * (allowed_host_paths, forbidden_capabilities) as a spec modifier, so it
 * holds for containers from any client.
 */
export const hostPolicyPlugin = definePlugin({
  type: PluginType.SpecModifier,
  id: 'host-policy',
  requires: [TaskManager],
  provides: SpecModifier,
  init(ctx) {
    const policy = policies.get(ctx.get(TaskManager));
    if (!policy) throw new SkipPlugin('the task manager is not berth runtime-v2, whose config holds the host policy');
    return new HostPolicyModifier(policy);
  },
});

export default [runtimeV2Plugin, hostPolicyPlugin];
