import { loadProtoRoot, protoRoot } from '@berth/api/protocol';
import { bindService, GrpcServer } from '@berth/api/server';
import { createLogger, PluginRegistry, registerPackages } from '@berth/core';
import {
  DaemonInfo,
  DescriptorInbox,
  descriptorAddressOf,
  errorMessage,
  EventExchange,
  GrpcService,
  type Logger,
  PluginRegistryView,
  ttrpcAddressOf,
} from '@berth/plugin-api';
import { socketAnswers, type TtrpcServer } from '@berth/ttrpc';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DaemonConfig } from './config.js';
import { DescriptorInboxServer } from './descriptor-inbox.js';
import { RootLock } from './root-lock.js';
import { startTtrpcServer } from './ttrpc-server.js';

/** Plugin packages every berthd loads, the same way it loads third-party ones. */
export const BUILTIN_PLUGIN_PACKAGES = [
  '@berth/core',
  '@berth/content-local',
  '@berth/snapshotter-overlayfs',
  '@berth/snapshotter-native',
  '@berth/differ',
  '@berth/api',
  '@berth/runtime-v2',
] as const;

/** Without these berthd would serve but lose or refuse every write: failing to load them fails start-up. */
export const ALWAYS_REQUIRED = ['io.containerd.event.v1.exchange', 'io.containerd.metadata.v1.level'] as const;

const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));

export const BERTH_VERSION = (JSON.parse(readFileSync(join(PACKAGE_DIR, 'package.json'), 'utf8')) as { version: string })
  .version;

export interface RunningDaemon {
  readonly config: DaemonConfig;
  readonly registry: PluginRegistry;
  readonly log: Logger;
  /** Stop serving, close every plugin, remove the socket, release the root. */
  close(): Promise<void>;
}

/**
 * Start berthd: take the root lock, load and initialise plugins, serve every
 * contributed gRPC service on a unix socket that only its owner (or the
 * configured group) may use.
 */
export async function startDaemon(config: DaemonConfig, log: Logger = createLogger(config.logLevel)): Promise<RunningDaemon> {
  await mkdir(config.root, { recursive: true, mode: 0o711 });
  await mkdir(config.state, { recursive: true, mode: 0o711 });
  const lock = RootLock.acquire(config.root);
  let registry: PluginRegistry | undefined;
  let inbox: DescriptorInboxServer | undefined;
  try {
    await refuseLiveSocket(config.grpc.address);
    inbox = await DescriptorInboxServer.listen(descriptorAddressOf(config.grpc.address), log, config.grpc);
    registry = new PluginRegistry({
      root: config.root,
      state: config.state,
      log,
      configs: config.plugins,
      disabled: config.disabledPlugins,
    });
    const info: DaemonInfo = {
      version: BERTH_VERSION,
      revision: gitRevision(),
      root: config.root,
      state: config.state,
      address: config.grpc.address,
    };
    registry.preset(DaemonInfo, info);
    registry.preset(PluginRegistryView, registry);
    registry.preset(DescriptorInbox, inbox);
    await registerPackages(registry, BUILTIN_PLUGIN_PACKAGES, [PACKAGE_DIR]);
    await registerPackages(registry, config.pluginPackages, [config.configDir, PACKAGE_DIR]);
    await registry.initAll();
    checkRequired(registry, [...ALWAYS_REQUIRED, ...config.requiredPlugins]);

    const server = await serve(config, registry, log);
    // Shims publish task events here (their TTRPC_ADDRESS); started once every plugin is up.
    const exchange = registry.lookup(EventExchange);
    let ttrpc: TtrpcServer | undefined;
    try {
      ttrpc = exchange ? await startTtrpcServer(ttrpcAddressOf(config.grpc.address), exchange, log) : undefined;
    } catch (err) {
      await server.close();
      throw err;
    }
    const plugins = registry.list();
    log.info('berthd started', {
      version: BERTH_VERSION,
      address: config.grpc.address,
      root: config.root,
      state: config.state,
      plugins: plugins.length,
      failed: plugins.filter((p) => p.status.state === 'error').map((p) => `${p.type}.${p.id}`),
    });

    const reg = registry;
    const descriptors = inbox;
    let closing: Promise<void> | undefined;
    return {
      config,
      registry: reg,
      log,
      close: () => {
        closing ??= (async () => {
          await server.close();
          await ttrpc?.close();
          await descriptors.close();
          await reg.close();
          await rm(config.grpc.address, { force: true });
          lock.release();
          log.info('berthd stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    await inbox?.close();
    await registry?.close();
    lock.release();
    throw err;
  }
}

function checkRequired(registry: PluginRegistry, required: readonly string[]): void {
  const plugins = new Map(registry.list().map((p) => [`${p.type}.${p.id}`, p]));
  for (const address of required) {
    const plugin = plugins.get(address);
    if (!plugin) throw new Error(`required plugin ${address} is not registered (disabled or not installed)`);
    if (plugin.status.state === 'error') throw new Error(`required plugin ${address} failed: ${plugin.status.message}`);
    if (plugin.status.state === 'skipped') throw new Error(`required plugin ${address} was skipped: ${plugin.status.reason}`);
  }
}

async function serve(config: DaemonConfig, registry: PluginRegistry, log: Logger): Promise<GrpcServer> {
  const server = new GrpcServer({ log });
  const contributions = registry.providers(GrpcService);
  const extraProtos = contributions.flatMap((c) => c.value.protoFiles ?? []);
  const root = extraProtos.length > 0 ? loadProtoRoot(extraProtos) : protoRoot();
  for (const { address, value } of contributions) {
    try {
      bindService(server, root, value, log);
    } catch (err) {
      registry.fail(address, errorMessage(err));
      log.error('gRPC service not served', { plugin: address, error: errorMessage(err) });
    }
  }

  const socket = config.grpc.address;
  await mkdir(dirname(socket), { recursive: true, mode: 0o711 });
  await rm(socket, { force: true });
  // The umask makes the socket 0600 from the moment it exists.
  const previous = process.umask(0o177);
  try {
    await server.listen(socket);
  } finally {
    process.umask(previous);
  }
  if (config.grpc.gid !== 0 || config.grpc.uid !== 0) {
    await chown(socket, config.grpc.uid, config.grpc.gid);
    if (config.grpc.gid !== 0) await chmod(socket, 0o660);
  }
  return server;
}

/** A socket someone still answers on belongs to another daemon: never steal it. */
async function refuseLiveSocket(path: string): Promise<void> {
  if (existsSync(path) && (await socketAnswers(path))) {
    throw new Error(`${path} is in use by another process; choose another --address`);
  }
}

/** The commit berthd was built from, when it runs from a git checkout. */
function gitRevision(): string {
  try {
    const gitDir = join(PACKAGE_DIR, '..', '..', '.git');
    const head = readFileSync(join(gitDir, 'HEAD'), 'utf8').trim();
    if (!head.startsWith('ref: ')) return head;
    const ref = head.slice(5);
    if (existsSync(join(gitDir, ref))) return readFileSync(join(gitDir, ref), 'utf8').trim();
    const packed = readFileSync(join(gitDir, 'packed-refs'), 'utf8');
    return packed.split('\n').find((l) => l.endsWith(` ${ref}`))?.split(' ')[0] ?? '';
  } catch {
    return '';
  }
}
