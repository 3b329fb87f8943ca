import {
  type Introspection,
  type PluginInfo,
  type PluginRegistryView,
  parseFilters,
  type ServerInfo,
} from '@berth/plugin-api';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, readlink, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Introspection: the registry's view of plugins and a server UUID that survives restarts. */
export class IntrospectionService implements Introspection {
  private uuid: Promise<string> | undefined;
  private pidns: Promise<number> | undefined;

  constructor(
    private readonly registry: PluginRegistryView,
    private readonly root: string,
  ) {}

  plugins(filters: readonly string[]): PluginInfo[] {
    const filter = parseFilters(filters);
    // As in containerd, only `type` and `id` are filterable fields.
    return this.registry.list().filter((p) =>
      filter.match((path) => (path[0] === 'type' ? p.type : path[0] === 'id' ? p.id : undefined)),
    );
  }

  async server(): Promise<ServerInfo> {
    this.uuid ??= this.loadUuid();
    // ctr asks on every command (ctr version, and each client's start): both never change.
    this.pidns ??= pidNamespace();
    return { uuid: await this.uuid, pid: process.pid, pidns: await this.pidns };
  }

  private async loadUuid(): Promise<string> {
    const path = join(this.root, 'uuid');
    try {
      const existing = (await readFile(path, 'utf8')).trim();
      if (UUID.test(existing)) return existing;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const uuid = randomUUID();
    await mkdir(this.root, { recursive: true });
    await writeFile(`${path}.tmp`, uuid, { mode: 0o644 });
    await rename(`${path}.tmp`, path);
    return uuid;
  }
}

async function pidNamespace(): Promise<number> {
  try {
    const link = await readlink('/proc/self/ns/pid');
    return Number(/\[(\d+)\]/.exec(link)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

