import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthClient } from './berth-client.js';
import { startTestDaemon } from './test-daemon.js';

/*
 * Run one test suite against both engines that speak containerd's API: a real
 * containerd (the reference, on a private root, state and socket) and berthd.
 * An engine that cannot run here is skipped with the reason.
 */

export type EngineName = 'containerd' | 'berthd';

export interface TestEngine {
  readonly name: EngineName;
  readonly address: string;
  close(): Promise<void>;
}

export interface EngineAvailability {
  readonly name: EngineName;
  /** Why the engine's suite is skipped; undefined when it runs. */
  readonly skip?: string;
}

/** Start a containerd 1.6 on private folders under /tmp, stopped (by its pid) in close(). */
export async function startContainerd(): Promise<TestEngine> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-ctd-'));
  const address = join(dir, 'containerd.sock');
  const config = join(dir, 'config.toml');
  writeFileSync(
    config,
    [
      'version = 2',
      `root = ${JSON.stringify(join(dir, 'root'))}`,
      `state = ${JSON.stringify(join(dir, 'state'))}`,
      // Nothing here needs Kubernetes or the odd snapshotters; leaving them out starts faster.
      'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt"]',
      '[grpc]',
      `  address = ${JSON.stringify(address)}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(`${address}.ttrpc`)}`,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('containerd', ['--config', config, '--log-level', 'error'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const close = async () => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`containerd exited with ${child.exitCode}: ${stderr}`);
      if (existsSync(address)) {
        const client = new BerthClient({ address, namespace: 'default', timeout: 2000 });
        try {
          await client.version();
          break;
        } catch {
          // Socket there, server not yet serving.
        } finally {
          client.close();
        }
      }
      if (Date.now() > deadline) throw new Error(`containerd did not serve ${address} within 20s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { name: 'containerd', address, close };
}

export async function startBerthd(): Promise<TestEngine> {
  const d = await startTestDaemon();
  return { name: 'berthd', address: d.address, close: () => d.close() };
}

export function startEngine(name: EngineName): Promise<TestEngine> {
  return name === 'containerd' ? startContainerd() : startBerthd();
}

/**
 * Which engines can run suites that need the given gRPC services
 * (`content`, `images`, `leases`, …): containerd when its binary is here and
 * we are root; berthd when its build serves them all.
 */
export async function engineAvailability(services: readonly string[]): Promise<EngineAvailability[]> {
  const out: EngineAvailability[] = [];
  const which = spawnSync('containerd', ['--version'], { encoding: 'utf8' });
  if (which.error) out.push({ name: 'containerd', skip: 'containerd is not installed' });
  else if (process.getuid?.() !== 0) out.push({ name: 'containerd', skip: 'containerd needs root' });
  else out.push({ name: 'containerd' });

  let berthd: TestEngine | undefined;
  try {
    berthd = await startBerthd();
    const client = new BerthClient({ address: berthd.address });
    try {
      const plugins = await client.plugins(['type==io.containerd.grpc.v1']);
      const missing = services.filter((s) => !plugins.some((p) => p.id === s && p.status.state === 'ok'));
      out.push(missing.length === 0 ? { name: 'berthd' } : { name: 'berthd', skip: `berthd does not serve ${missing.join(', ')} yet` });
    } finally {
      client.close();
    }
  } catch (err) {
    out.push({ name: 'berthd', skip: `berthd did not start: ${(err as Error).message}` });
  } finally {
    await berthd?.close();
  }
  const only = process.env.BERTH_TEST_ENGINES?.split(',').filter(Boolean);
  return out.map((e) => (only && !only.includes(e.name) ? { ...e, skip: e.skip ?? 'not in BERTH_TEST_ENGINES' } : e));
}
