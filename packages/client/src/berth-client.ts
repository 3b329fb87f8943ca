import { GrpcConnection } from '@berth/api';
import type { Labels, Lease, PluginInfo, ServerInfo } from '@berth/plugin-api';
import { ClientContext, type RequestOptions } from './client-context.js';
import { ContainersClient } from './containers-client.js';
import { ContentClient } from './content-client.js';
import { DiffClient } from './diff-client.js';
import { EventsClient } from './events-client.js';
import { type HealthStatus, HealthClient } from './health-client.js';
import { ImagesClient } from './images-client.js';
import { IntrospectionClient } from './introspection-client.js';
import { contextLease, DEFAULT_LEASE_EXPIRY_MS, LeasedClientContext, LeasesClient } from './leases-client.js';
import { NamespacesClient } from './namespaces-client.js';
import { type RunOptions, type RunResult, runContainer } from './run.js';
import { SnapshotsClient } from './snapshots-client.js';
import { TasksClient } from './tasks-client.js';
import { type UnpackOptions, type UnpackResult, unpack } from './unpack.js';
import { type VersionInfo, VersionClient } from './version-client.js';

export const DEFAULT_ADDRESS = '/run/berth/berthd.sock';
export const DEFAULT_NAMESPACE = 'default';

export interface BerthClientOptions {
  /** Socket path or gRPC target; default `$BERTH_ADDRESS`, else /run/berth/berthd.sock. */
  readonly address?: string;
  /** Namespace sent with every call; default `$BERTH_NAMESPACE`, else `default`. */
  readonly namespace?: string;
  /** Deadline for each unary call in milliseconds; none by default. */
  readonly timeout?: number;
}

/**
 * A client for berthd (or containerd), shaped like containerd's Go client:
 * one connection, one small client per service. Every error is a berth error
 * (NotFoundError, UnavailableError when the daemon cannot be reached, …).
 */
export class BerthClient {
  /** The connection, namespace and deadline that every service client here shares. */
  readonly context: ClientContext;
  readonly namespaces: NamespacesClient;
  readonly events: EventsClient;
  readonly content: ContentClient;
  readonly images: ImagesClient;
  readonly leases: LeasesClient;
  readonly containers: ContainersClient;
  readonly tasks: TasksClient;
  /** The default (overlayfs) snapshotter; `snapshotService(name)` for another. */
  readonly snapshots: SnapshotsClient;
  readonly diff: DiffClient;
  private readonly introspection: IntrospectionClient;
  private readonly versionService: VersionClient;
  private readonly healthService: HealthClient;

  /** From options, or from an existing context to share its connection. */
  constructor(options: BerthClientOptions | ClientContext = {}) {
    this.context =
      options instanceof ClientContext
        ? options
        : new ClientContext(
            new GrpcConnection(options.address ?? process.env.BERTH_ADDRESS ?? DEFAULT_ADDRESS),
            options.namespace ?? process.env.BERTH_NAMESPACE ?? DEFAULT_NAMESPACE,
            options.timeout,
          );
    this.namespaces = new NamespacesClient(this.context);
    this.events = new EventsClient(this.context);
    this.content = new ContentClient(this.context);
    this.images = new ImagesClient(this.context);
    this.leases = new LeasesClient(this.context);
    this.containers = new ContainersClient(this.context);
    this.tasks = new TasksClient(this.context);
    this.snapshots = new SnapshotsClient(this.context);
    this.diff = new DiffClient(this.context);
    this.introspection = new IntrospectionClient(this.context);
    this.versionService = new VersionClient(this.context);
    this.healthService = new HealthClient(this.context);
  }

  get address(): string {
    return this.context.connection.address;
  }

  get namespace(): string {
    return this.context.namespace;
  }

  /** A client for another namespace on the same connection (closing either closes both). */
  withNamespace(namespace: string): BerthClient {
    return new BerthClient(this.context.withNamespace(namespace));
  }

  /** The lease this client's calls carry (see `withLease`), if any. */
  get lease(): string | undefined {
    return contextLease(this.context);
  }

  /**
   * Run `fn` with a client whose calls carry a new lease, so that what they
   * write (content, ingests, snapshots) survives garbage collection until `fn`
   * has made it reachable (an image, a container); then delete the lease. The
   * lease expires after 24 hours should this process die first (containerd's
   * client does the same). Inside another `withLease`, reuses that lease.
   * The client given to `fn` shares this one's connection: do not close it.
   */
  async withLease<T>(
    fn: (client: BerthClient, lease: string) => Promise<T>,
    opts: RequestOptions & { readonly expireAfterMs?: number; readonly labels?: Labels; readonly sync?: boolean } = {},
  ): Promise<T> {
    const existing = this.lease;
    if (existing) return fn(this, existing);
    const lease: Lease = await this.leases.create({
      expireAfterMs: opts.expireAfterMs ?? DEFAULT_LEASE_EXPIRY_MS,
      ...(opts.labels ? { labels: opts.labels } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    try {
      return await fn(new BerthClient(new LeasedClientContext(this.context, lease.id)), lease.id);
    } finally {
      await this.leases.delete(lease.id, { sync: !!opts.sync });
    }
  }

  version(opts?: RequestOptions): Promise<VersionInfo> {
    return this.versionService.version(opts);
  }

  server(opts?: RequestOptions): Promise<ServerInfo> {
    return this.introspection.server(opts);
  }

  health(opts?: RequestOptions): Promise<HealthStatus> {
    return this.healthService.check('', opts);
  }

  plugins(filters: readonly string[] = [], opts?: RequestOptions): Promise<PluginInfo[]> {
    return this.introspection.plugins(filters, opts);
  }

  /** The Snapshots service for one snapshotter (default overlayfs), as containerd's `SnapshotService(name)`. */
  snapshotService(snapshotter?: string): SnapshotsClient {
    return new SnapshotsClient(this.context, snapshotter ? { snapshotter } : {});
  }

  /** Unpack an image's layers into snapshots, as `ctr images unpack`; see `unpack`. */
  unpack(imageName: string, opts?: UnpackOptions): Promise<UnpackResult> {
    return unpack(this, imageName, opts);
  }

  /**
   * Run a container from an unpacked image, as `ctr run`: create it, start
   * its task with stdio through FIFOs, wait (unless detached) and report the
   * exit status; see RunOptions.
   */
  run(opts: RunOptions): Promise<RunResult> {
    return runContainer(this, opts);
  }

  /** Close the connection shared by this client and those made with `withNamespace`. */
  close(): void {
    this.context.connection.close();
  }
}
