import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AlreadyExistsError,
  type AnyValue,
  type Container,
  type ContainersService,
  type CreateTaskOptions,
  FailedPreconditionError,
  InvalidArgumentError,
  type Mount,
  NotFoundError,
  NotImplementedError,
  type OciSpec,
  type ProcessState,
  type RequestContext,
  type RuntimeTask,
  type SnapshotsService,
  type SpecModifier,
  type TaskManager,
} from '@berth/plugin-api';
import { orderedModifiers, TasksServiceImpl } from './tasks-service.js';

const ctx: RequestContext = { namespace: 'ns1' };
const json = (v: unknown): AnyValue => ({ typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Spec', value: new TextEncoder().encode(JSON.stringify(v)) });
const unjson = (a: AnyValue) => JSON.parse(new TextDecoder().decode(a.value));
const noIO = { stdin: '', stdout: '', stderr: '', terminal: false };

function container(id: string, extra: Partial<Container> = {}): Container {
  return {
    id,
    labels: { team: 'a' },
    image: '',
    runtime: { name: 'io.containerd.runc.v2', options: { typeUrl: 'containerd.runc.v1.Options', value: new Uint8Array([1]) } },
    spec: json({ ociVersion: '1.0.2', process: { args: ['/bin/true'] }, root: { path: 'rootfs' } }),
    snapshotter: '',
    snapshotKey: '',
    createdAt: new Date(),
    updatedAt: new Date(),
    extensions: {},
    sandbox: '',
    ...extra,
  };
}

class FakeContainers implements ContainersService {
  readonly byId = new Map<string, Container>();
  async get(c: RequestContext, id: string): Promise<Container> {
    const found = c.namespace === 'ns1' ? this.byId.get(id) : undefined;
    if (!found) throw new NotFoundError(`container "${id}": not found`);
    return found;
  }
  list = async () => [...this.byId.values()];
  create = async () => assert.fail('not used');
  update = async () => assert.fail('not used');
  delete = async () => assert.fail('not used');
}

class FakeTask implements RuntimeTask {
  readonly calls: unknown[][] = [];
  readonly bundle = '/bundle';
  readonly pid = 100;
  stateError: Error | undefined;
  statsError: Error | undefined;
  constructor(
    readonly namespace: string,
    readonly id: string,
    readonly runtime: string,
  ) {}
  private record(...call: unknown[]) {
    this.calls.push(call);
  }
  async state(_c: RequestContext, execId?: string): Promise<ProcessState> {
    if (this.stateError) throw this.stateError;
    return { id: execId ?? this.id, pid: this.pid, status: 'running', exitStatus: 0, ...noIO };
  }
  async start(_c: RequestContext, execId?: string) {
    this.record('start', execId);
    return 101;
  }
  async kill(_c: RequestContext, signal: number, opts?: object) {
    this.record('kill', signal, opts);
  }
  async exec(_c: RequestContext, execId: string, opts: { spec: AnyValue }) {
    this.record('exec', execId, unjson(opts.spec));
  }
  async deleteProcess(_c: RequestContext, execId: string) {
    this.record('deleteProcess', execId);
    return { pid: 7, exitStatus: 1, exitedAt: new Date(5) };
  }
  async resizePty(_c: RequestContext, execId: string | undefined, w: number, h: number) {
    this.record('resizePty', execId, w, h);
  }
  async closeIO(_c: RequestContext, execId: string | undefined) {
    this.record('closeIO', execId);
  }
  async pause() {
    this.record('pause');
  }
  async resume() {
    this.record('resume');
  }
  async pids() {
    return [{ pid: 100 }];
  }
  async update(_c: RequestContext, resources: AnyValue | undefined, annotations: object) {
    this.record('update', resources?.typeUrl, annotations);
  }
  async wait(_c: RequestContext, execId?: string) {
    this.record('wait', execId);
    return { pid: 100, exitStatus: 3, exitedAt: new Date(9) };
  }
  async stats() {
    if (this.statsError) throw this.statsError;
    return { typeUrl: 'io.containerd.cgroups.v1.Metrics', value: new Uint8Array([this.id.length]) };
  }
}

class FakeRuntime implements TaskManager {
  readonly tasksByKey = new Map<string, FakeTask>();
  created: CreateTaskOptions | undefined;
  async create(c: RequestContext, id: string, opts: CreateTaskOptions) {
    this.created = opts;
    const task = new FakeTask(c.namespace ?? '', id, opts.runtime);
    this.tasksByKey.set(`${c.namespace}/${id}`, task);
    return task;
  }
  get(c: RequestContext, id: string) {
    return this.tasksByKey.get(`${c.namespace}/${id}`);
  }
  tasks(c: RequestContext) {
    return [...this.tasksByKey.values()].filter((t) => t.namespace === c.namespace);
  }
  async delete(c: RequestContext, id: string) {
    this.tasksByKey.delete(`${c.namespace}/${id}`);
    return { pid: 100, exitStatus: 0, exitedAt: new Date(1) };
  }
}

function setup(modifiers: ReadonlyMap<string, SpecModifier> = new Map(), snapshots?: SnapshotsService) {
  const containers = new FakeContainers();
  const runtime = new FakeRuntime();
  const service = new TasksServiceImpl(containers, runtime, orderedModifiers(modifiers), snapshots);
  return { containers, runtime, service };
}

const input = (containerId: string, extra: object = {}) => ({ containerId, rootfs: [] as Mount[], io: noIO, ...extra });

test('create: the container must exist; its runtime, options and spec go to the runtime', async () => {
  const { containers, runtime, service } = setup();
  await assert.rejects(service.create(ctx, input('nope')), (err: Error) => err instanceof NotFoundError && err.message === 'container "nope": not found');
  await assert.rejects(service.create({}, input('c1')), FailedPreconditionError, 'namespace required');
  containers.byId.set('c1', container('c1'));
  const io = { stdin: '/fifo/in', stdout: '/fifo/out', stderr: '/fifo/err', terminal: true };
  const rootfs = [{ type: 'overlay', source: 'overlay', options: ['lowerdir=/a'] }];
  assert.deepEqual(await service.create(ctx, input('c1', { io, rootfs })), { containerId: 'c1', pid: 100 });
  assert.equal(runtime.created?.runtime, 'io.containerd.runc.v2');
  assert.deepEqual(runtime.created?.io, io);
  assert.deepEqual(runtime.created?.rootfs, rootfs);
  assert.deepEqual(runtime.created?.spec, { ociVersion: '1.0.2', process: { args: ['/bin/true'] }, root: { path: 'rootfs' } });
  assert.equal(runtime.created?.runtimeOptions?.typeUrl, 'containerd.runc.v1.Options');
  assert.equal(runtime.created?.taskOptions, undefined);
  await assert.rejects(service.create(ctx, input('c1')), (err: Error) => err instanceof AlreadyExistsError && err.message === 'task c1: already exists');

  containers.byId.set('c2', container('c2'));
  const options = { typeUrl: 'containerd.runc.v1.Options', value: new Uint8Array([2]) };
  await service.create(ctx, input('c2', { runtimePath: '/usr/bin/containerd-shim-runc-v2', options }));
  assert.equal(runtime.created?.runtime, '/usr/bin/containerd-shim-runc-v2', 'runtime_path overrides the name');
  assert.deepEqual(runtime.created?.taskOptions, options);

  containers.byId.set('c3', container('c3'));
  await assert.rejects(service.create(ctx, input('c3', { checkpoint: { digest: 'sha256:x' } })), NotImplementedError);
  containers.byId.set('bad', container('bad', { spec: { typeUrl: 'x', value: new TextEncoder().encode('{nope') } }));
  await assert.rejects(service.create(ctx, input('bad')), (err: Error) => err instanceof InvalidArgumentError && /spec \(x\) is not JSON/.test(err.message));
});

test("create: without rootfs in the request, the container's snapshot mounts", async () => {
  const mounts: Mount[] = [{ type: 'bind', source: '/snap/1', options: ['rbind', 'rw'] }];
  const asked: string[] = [];
  const snapshots = {
    mounts: async (_c: RequestContext, sn: string, key: string) => {
      asked.push(`${sn}/${key}`);
      return mounts;
    },
  } as unknown as SnapshotsService;
  const { containers, runtime, service } = setup(new Map(), snapshots);
  containers.byId.set('c1', container('c1', { snapshotter: 'overlayfs', snapshotKey: 'c1-snap' }));
  await service.create(ctx, input('c1'));
  assert.deepEqual(asked, ['overlayfs/c1-snap']);
  assert.deepEqual(runtime.created?.rootfs, mounts);
  containers.byId.set('c2', container('c2'));
  await service.create(ctx, input('c2'));
  assert.deepEqual(runtime.created?.rootfs, [], 'no snapshot: the spec root is a host path');

  const bare = setup();
  bare.containers.byId.set('c1', container('c1', { snapshotter: 'overlayfs', snapshotKey: 'k' }));
  await assert.rejects(bare.service.create(ctx, input('c1')), /no snapshots service is loaded/);
});

test('create: spec modifiers run in order on copies; a refusal keeps its message and refuses the task', async () => {
  const seen: string[] = [];
  const modifier = (name: string, order: number, fn?: (spec: OciSpec) => OciSpec | undefined): SpecModifier => ({
    order,
    modify: (_c, input, spec) => {
      seen.push(`${name}:${input.containerId}:${input.runtime}:${input.labels.team}`);
      return fn ? (fn(spec) as OciSpec) : spec;
    },
  });
  const modifiers = new Map<string, SpecModifier>([
    ['z-late', modifier('late', 10, (s) => ({ ...s, late: (s as { early?: boolean }).early === true }))],
    ['b', modifier('b', 0)],
    ['a', modifier('a', 0)],
    ['early', modifier('early', -5, (s) => Object.assign(s, { early: true }))],
  ]);
  const { containers, runtime, service } = setup(modifiers);
  const c = container('c1');
  containers.byId.set('c1', c);
  await service.create(ctx, input('c1'));
  assert.deepEqual(seen, ['early:c1:io.containerd.runc.v2:a', 'a:c1:io.containerd.runc.v2:a', 'b:c1:io.containerd.runc.v2:a', 'late:c1:io.containerd.runc.v2:a']);
  assert.equal((runtime.created?.spec as Record<string, unknown> | undefined)?.late, true);
  assert.equal(unjson(c.spec as AnyValue).early, undefined, "the container's spec is untouched");

  const refusing = setup(
    new Map<string, SpecModifier>([
      ['policy', { order: 0, modify: () => { throw new InvalidArgumentError('host path /etc is not allowed'); } }],
    ]),
  );
  refusing.containers.byId.set('c1', container('c1'));
  await assert.rejects(refusing.service.create(ctx, input('c1')), (err: Error) => err instanceof InvalidArgumentError && err.message === 'host path /etc is not allowed');
  assert.equal(refusing.runtime.created, undefined);
  const crashing = setup(new Map<string, SpecModifier>([['cdi', { order: 0, modify: () => { throw new Error('no such device'); } }]]));
  crashing.containers.byId.set('c1', container('c1'));
  await assert.rejects(crashing.service.create(ctx, input('c1')), (err: Error) => err instanceof FailedPreconditionError && err.message === 'spec modifier cdi: no such device');
});

test("every other call finds the container, then its task, with containerd's messages", async () => {
  const { containers, service } = setup();
  containers.byId.set('c1', container('c1'));
  const notFound = (message: string) => (err: Error) => err instanceof NotFoundError && err.message === message;
  await assert.rejects(service.get(ctx, 'c1'), notFound('task c1 not found'));
  await assert.rejects(service.kill(ctx, 'c1', 9), notFound('task c1 not found'));
  await assert.rejects(service.delete(ctx, 'c1'), notFound('task c1 not found'));
  await assert.rejects(service.wait(ctx, 'nope'), notFound('container "nope": not found'));
  await assert.rejects(service.checkpoint(ctx, 'nope'), notFound('container "nope": not found'));
});

test('calls reach the task with exec ids; Checkpoint is NotImplemented; CloseIO only for stdin', async () => {
  const { containers, runtime, service } = setup();
  containers.byId.set('c1', container('c1'));
  await service.create(ctx, input('c1'));
  const task = runtime.get(ctx, 'c1') as FakeTask;
  assert.equal(await service.start(ctx, 'c1'), 101);
  assert.equal(await service.start(ctx, 'c1', 'e1'), 101);
  await service.kill(ctx, 'c1', 15, { all: true });
  await service.kill(ctx, 'c1', 9, { execId: 'e1' });
  await service.resizePty(ctx, 'c1', '', 80, 24);
  await service.closeIO(ctx, 'c1', 'e1', false);
  await service.closeIO(ctx, 'c1', 'e1', true);
  await service.pause(ctx, 'c1');
  await service.resume(ctx, 'c1');
  await service.update(ctx, 'c1', { typeUrl: 'opencontainers.runtime-spec.1.LinuxResources', value: new Uint8Array() }, { a: 'b' });
  assert.deepEqual(await service.wait(ctx, 'c1', 'e1'), { pid: 100, exitStatus: 3, exitedAt: new Date(9) });
  assert.deepEqual(await service.deleteProcess(ctx, 'c1', 'e1'), { pid: 7, exitStatus: 1, exitedAt: new Date(5) });
  assert.deepEqual(await service.listPids(ctx, 'c1'), [{ pid: 100 }]);
  assert.equal((await service.get(ctx, 'c1', 'e1')).id, 'e1');
  assert.deepEqual(task.calls, [
    ['start', undefined],
    ['start', 'e1'],
    ['kill', 15, { all: true }],
    ['kill', 9, { execId: 'e1', all: false }],
    ['resizePty', undefined, 80, 24],
    ['closeIO', 'e1'],
    ['pause'],
    ['resume'],
    ['update', 'opencontainers.runtime-spec.1.LinuxResources', { a: 'b' }],
    ['wait', 'e1'],
    ['deleteProcess', 'e1'],
  ]);
  await assert.rejects(service.checkpoint(ctx, 'c1'), (err: Error) => err instanceof NotImplementedError && /checkpoint is not implemented yet/.test(err.message));
  await assert.rejects(service.deleteProcess(ctx, 'c1', ''), /exec id cannot be empty/);
  assert.deepEqual(await service.delete(ctx, 'c1'), { pid: 100, exitStatus: 0, exitedAt: new Date(1) });
  assert.equal(runtime.get(ctx, 'c1'), undefined);
});

test('exec: the id is required and validated; exec modifiers see the process', async () => {
  const modifiers = new Map<string, SpecModifier>([
    [
      'caps',
      {
        order: 0,
        modify: (_c, _i, s) => s,
        modifyExecProcess: (_c, input, process) => {
          if (input.execId === 'evil') throw new InvalidArgumentError('capability CAP_SYS_ADMIN is forbidden');
          return { ...process, env: ['BERTH=1'] };
        },
      },
    ],
  ]);
  const { containers, runtime, service } = setup(modifiers);
  containers.byId.set('c1', container('c1'));
  await service.create(ctx, input('c1'));
  const task = runtime.get(ctx, 'c1') as FakeTask;
  const spec = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: new TextEncoder().encode('{"args":["sh"]}') };
  await assert.rejects(service.exec(ctx, 'c1', '', { spec, io: noIO }), (err: Error) => err instanceof InvalidArgumentError && err.message === 'exec id cannot be empty');
  await assert.rejects(service.exec(ctx, 'c1', 'bad id!', { spec, io: noIO }), /^InvalidArgumentError: invalid exec id bad id!/);
  await assert.rejects(service.exec(ctx, 'c1', 'evil', { spec, io: noIO }), /CAP_SYS_ADMIN is forbidden/);
  await service.exec(ctx, 'c1', 'e1', { spec, io: noIO });
  assert.deepEqual(task.calls, [['exec', 'e1', { args: ['sh'], env: ['BERTH=1'] }]]);
});

test('list leaves out tasks gone meanwhile; metrics honour id filters and skip failing stats', async () => {
  const { containers, runtime, service } = setup();
  for (const id of ['a', 'bb', 'ccc']) {
    containers.byId.set(id, container(id));
    await service.create(ctx, input(id));
  }
  (runtime.get(ctx, 'bb') as FakeTask).stateError = new NotFoundError('gone');
  assert.deepEqual((await service.list(ctx)).map((p) => p.id), ['a', 'ccc']);
  assert.deepEqual(await service.list({ namespace: 'other' }), []);
  (runtime.get(ctx, 'a') as FakeTask).stateError = new Error('shim broke');
  await assert.rejects(service.list(ctx), /shim broke/);

  assert.deepEqual((await service.metrics(ctx, ['id==bb'])).map((m) => [m.id, m.data?.value[0]]), [['bb', 2]]);
  assert.deepEqual((await service.metrics(ctx, [])).map((m) => m.id), ['a', 'bb', 'ccc']);
  assert.deepEqual((await service.metrics(ctx, ['id==a', 'id==ccc'])).map((m) => m.id), ['a', 'ccc']);
  assert.deepEqual((await service.metrics(ctx, ['runtime==io.containerd.runc.v2,id~=^c'])).map((m) => m.id), ['ccc']);
  (runtime.get(ctx, 'ccc') as FakeTask).statsError = new Error('cgroup gone');
  assert.deepEqual((await service.metrics(ctx, [])).map((m) => m.id), ['a', 'bb']);
  assert.deepEqual(await service.metrics(ctx, ['id==nope']), []);
  await assert.rejects(service.metrics(ctx, ['id==']), InvalidArgumentError);
});
