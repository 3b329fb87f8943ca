import { encodeMessage, protoRoot } from '@berth/api';
import { InvalidArgumentError, NotFoundError, NotImplementedError, UnavailableError, UnknownError } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeFrame, FrameDecoder, MESSAGE_LENGTH_MAX, MessageType } from './frame-decoder.js';
import { decodeResponse, encodeRequest } from './messages.js';
import { TtrpcClient, ttrpcService, ttrpcSocketPath } from './ttrpc-client.js';
import { socketAnswers, type TtrpcRequestContext, TtrpcServer } from './ttrpc-server.js';

/**
 * The real peers: containerd 1.6's ttrpc server (the shim-facing Events
 * service) and the stock runc shim's Task service.
 */

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
const EVENTS = 'containerd.services.events.ttrpc.v1.Events';
const TASK = 'containerd.task.v2.Task';

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => dir && existsSync(join(dir, bin)));
}

function skipReason(bins: string[]): string | false {
  if (process.getuid?.() !== 0) return 'needs root (containerd and its shim run as root)';
  const missing = bins.filter((b) => !onPath(b));
  return missing.length > 0 ? `not installed: ${missing.join(', ')}` : false;
}

/** The last bytes a child wrote, for failure messages. */
function tail(child: ChildProcess): () => string {
  let text = '';
  const keep = (chunk: Buffer) => {
    text = (text + chunk.toString()).slice(-8192);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => text;
}

/** Running, not a zombie: a daemonised shim is reaped by whoever adopted it, maybe late. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {} // gone meanwhile
}

/** SIGTERM, then SIGKILL if the process outlives the grace period. */
async function stop(pid: number | undefined, graceMs: number): Promise<void> {
  if (!pid || !alive(pid)) return;
  signal(pid, 'SIGTERM');
  for (const deadline = Date.now() + graceMs; Date.now() < deadline && alive(pid); ) await sleep(50);
  if (alive(pid)) signal(pid, 'SIGKILL');
}

/** Frames on a bare connection, for what TtrpcClient never sends. */
async function rawExchange(path: string, frames: Buffer[], count: number) {
  const socket = createConnection(path);
  const decoder = new FrameDecoder();
  const answers: { streamId: number; code: number; message: string }[] = [];
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        if (f.kind !== 'message') continue;
        const status = decodeResponse(f.payload).status;
        answers.push({ streamId: f.streamId, code: status?.code ?? 0, message: status?.message ?? '' });
        if (answers.length === count) resolve();
      }
    });
    socket.on('error', reject);
    socket.write(Buffer.concat(frames));
  });
  socket.destroy();
  return answers;
}

const bareRequest = (service: string, method: string) =>
  encodeRequest({ service, method, payload: new Uint8Array(), timeoutNano: 0, metadata: [] });

describe('real containerd 1.6 serving ttrpc', { skip: skipReason(['containerd', 'ctr']) }, () => {
  let dir = '';
  let grpcSocket = '';
  let ttrpcSocket = '';
  let containerd: ChildProcess | undefined;
  let containerdLog = () => '';
  let ctr: ChildProcess | undefined;
  let client: TtrpcClient | undefined;
  const killOnExit = () => containerd?.kill('SIGKILL');

  before(async () => {
    dir = mkdtempSync('/tmp/berth-ctd-');
    grpcSocket = join(dir, 'containerd.sock');
    ttrpcSocket = `${grpcSocket}.ttrpc`;
    const config = join(dir, 'config.toml');
    writeFileSync(
      config,
      [
        'version = 2',
        `root = "${join(dir, 'root')}"`,
        `state = "${join(dir, 'state')}"`,
        // cri is slow and noisy; opt would install into /opt/containerd.
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt"]',
        '[grpc]',
        `  address = "${grpcSocket}"`,
        '[ttrpc]',
        `  address = "${ttrpcSocket}"`,
        '',
      ].join('\n'),
    );
    containerd = spawn('containerd', ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    process.once('exit', killOnExit);
    containerdLog = tail(containerd);
    for (const deadline = Date.now() + 60_000; ; await sleep(100)) {
      if (containerd.exitCode !== null) throw new Error(`containerd exited ${containerd.exitCode}:\n${containerdLog()}`);
      if ((await socketAnswers(ttrpcSocket)) && (await socketAnswers(grpcSocket))) break;
      if (Date.now() > deadline) throw new Error(`containerd did not serve in 60 s:\n${containerdLog()}`);
    }
    client = new TtrpcClient(ttrpcSocket);
  });

  after(async () => {
    client?.close();
    await stop(ctr?.pid, 2000);
    await stop(containerd?.pid, 10_000);
    process.off('exit', killOnExit);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('an envelope forwarded over ttrpc reaches `ctr events`', async () => {
    ctr = spawn('ctr', ['-a', grpcSocket, 'events'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let printed = '';
    ctr.stdout?.on('data', (chunk: Buffer) => {
      printed += chunk.toString();
    });
    const ctrLog = tail(ctr);
    const events = ttrpcService(client as TtrpcClient, protoRoot(), EVENTS);
    const namespaceCreate = protoRoot().lookupType('containerd.events.NamespaceCreate');
    const envelope = {
      timestamp: { seconds: Math.floor(Date.now() / 1000), nanos: 0 },
      namespace: 'default',
      topic: '/berth/test',
      // ctr drops events whose type it cannot decode, so this is one of containerd's own.
      event: {
        type_url: 'containerd.events.NamespaceCreate',
        value: encodeMessage(namespaceCreate, { name: 'berth-ttrpc', labels: { via: 'ttrpc' } }),
      },
    };
    // ctr subscribes some time after it starts: forward until it prints one.
    for (const deadline = Date.now() + 30_000; !printed.includes('/berth/test'); await sleep(200)) {
      if (Date.now() > deadline) throw new Error(`ctr events printed nothing:\n${ctrLog()}\ncontainerd:\n${containerdLog()}`);
      assert.deepEqual(await events.unary('Forward', { envelope }, { namespace: 'default', timeoutMs: 5000 }), {});
    }
    const line = printed.split('\n').find((l) => l.includes('/berth/test')) as string;
    assert.match(line, /^\S+ \S+ \S+ UTC default \/berth\/test \{"name":"berth-ttrpc","labels":\{"via":"ttrpc"\}\}$/);
  });

  test("containerd's statuses: the same codes berth's server gives, except an undecodable payload", async () => {
    const events = ttrpcService(client as TtrpcClient, protoRoot(), EVENTS);
    await assert.rejects(events.unary('Forward', { envelope: { namespace: 'default', topic: 'no-slash' } }), InvalidArgumentError);
    await assert.rejects(client?.call(EVENTS, 'Nope', new Uint8Array()) as Promise<Buffer>, (err: Error) => {
      return err instanceof NotImplementedError && err.message === 'method Nope';
    });
    // containerd says INTERNAL here; berth's server says INVALID_ARGUMENT, as for gRPC.
    await assert.rejects(client?.call(EVENTS, 'Forward', Buffer.from([0x0a, 0x05, 0x01])) as Promise<Buffer>, (err: Error) => {
      return err instanceof UnknownError && /error unmarshalling payload/.test(err.message);
    });

    const oversize = Buffer.alloc(10 + MESSAGE_LENGTH_MAX + 1);
    oversize.writeUInt32BE(MESSAGE_LENGTH_MAX + 1, 0);
    oversize.writeUInt32BE(5, 4);
    oversize[8] = MessageType.REQUEST;
    const answers = await rawExchange(
      ttrpcSocket,
      [
        encodeFrame(2, MessageType.REQUEST, bareRequest('x.Y', 'Z')),
        encodeFrame(3, MessageType.REQUEST, Buffer.from([0x0a, 0xff])),
        oversize,
        encodeFrame(7, MessageType.RESPONSE, new Uint8Array()),
        encodeFrame(9, MessageType.REQUEST, bareRequest('x.Y', 'Z')),
      ],
      4,
    );
    assert.deepEqual(answers, [
      { streamId: 2, code: 3, message: 'StreamID must be odd for client initiated streams' },
      { streamId: 3, code: 3, message: 'unmarshal request error: unexpected EOF' },
      { streamId: 5, code: 8, message: 'message length 4194305 exceed maximum message size of 4194304' },
      { streamId: 9, code: 12, message: 'service x.Y' },
    ]);
  });
});

describe('the stock containerd-shim-runc-v2 as a ttrpc server', { skip: skipReason(['containerd-shim-runc-v2', 'mkfifo']) }, () => {
  const namespace = 'berthtest';
  const id = `ttrpc-${process.pid}-${Date.now().toString(36)}`;
  let dir = '';
  let bundle = '';
  let grpcAddress = '';
  let runcRootExisted = true;
  let events: TtrpcServer | undefined;
  const forwarded: TtrpcRequestContext[] = [];
  let logReader: Socket | undefined;
  let shimLog = '';
  let printed = '';
  let client: TtrpcClient | undefined;
  let shimPid: number | undefined;

  /** Where the shim puts its socket: /run/containerd/s/sha256(<address>/<namespace>/<id>). */
  const expectedSocket = () =>
    `/run/containerd/s/${createHash('sha256').update(join(grpcAddress, namespace, id)).digest('hex')}`;

  /** Our shim, found by its unique id, whether or not Connect ever answered. */
  const shimPids = () =>
    readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
          return argv[0].endsWith('containerd-shim-runc-v2') && argv.includes(id);
        } catch {
          return false;
        }
      })
      .map(Number);

  before(async () => {
    dir = mkdtempSync('/tmp/berth-shim-');
    bundle = join(dir, id);
    grpcAddress = join(dir, 'containerd.sock'); // never served: the shim only hashes it and passes it on
    mkdirSync(bundle);
    runcRootExisted = existsSync(`/run/containerd/runc/${namespace}`);
    // `start` reads the bundle's config.json for grouping annotations; nothing else of it.
    writeFileSync(join(bundle, 'config.json'), '{}');
    // The shim writes its log to this FIFO and dies without a reader; O_RDWR never blocks.
    execFileSync('mkfifo', [join(bundle, 'log')]);
    logReader = new Socket({ fd: openSync(join(bundle, 'log'), constants.O_RDWR | constants.O_NONBLOCK), readable: true, writable: false });
    logReader.on('data', (chunk: Buffer) => {
      shimLog = (shimLog + chunk.toString()).slice(-8192);
    });
    events = new TtrpcServer({ log: silent });
    events.register(protoRoot(), EVENTS, {
      forward: async (_req: unknown, ctx: TtrpcRequestContext) => {
        forwarded.push(ctx);
        return {};
      },
    });
    await events.listen(join(dir, 'events.sock'));

    printed = await new Promise<string>((resolve, reject) => {
      const start = execFile(
        'containerd-shim-runc-v2',
        ['-namespace', namespace, '-address', grpcAddress, '-publish-binary', '/bin/true', '-id', id, 'start'],
        { cwd: bundle, env: { ...process.env, TTRPC_ADDRESS: join(dir, 'events.sock') }, timeout: 60_000 },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`shim start failed: ${err.message}\n${stdout}${stderr}`));
          else if (stderr.trim() !== '') reject(new Error(`shim start printed on stderr:\n${stderr}\nstdout: ${stdout}`));
          else resolve(stdout);
        },
      );
      start.stdin?.end(); // no runtime options
    });
    client = new TtrpcClient(printed);
  });

  after(async () => {
    client?.close();
    for (const pid of new Set([...(shimPid ? [shimPid] : []), ...(dir ? shimPids() : [])])) await stop(pid, 2000);
    if (grpcAddress) rmSync(expectedSocket(), { force: true });
    if (!runcRootExisted) {
      try {
        rmdirSync(`/run/containerd/runc/${namespace}`); // only ever empty: no container was created
      } catch {}
    }
    logReader?.destroy();
    await events?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('start prints a unix:// address under /run/containerd/s and writes it to <bundle>/address', () => {
    assert.equal(printed, `unix://${expectedSocket()}`);
    assert.equal(readFileSync(join(bundle, 'address'), 'utf8'), printed);
  });

  test('Connect answers the shim pid, with or without namespace metadata', async () => {
    const task = ttrpcService(client as TtrpcClient, protoRoot(), TASK);
    const plain = await task.unary<{ shimPid: number; taskPid: number; version: string }>('Connect', { id });
    assert.ok(plain.shimPid > 0, `shim pid ${plain.shimPid}\n${shimLog}`);
    assert.deepEqual(plain, { shimPid: plain.shimPid, taskPid: 0, version: '' });
    shimPid = plain.shimPid;
    assert.deepEqual(shimPids(), [shimPid]);
    // The runc shim takes its namespace from -namespace and ignores the request's.
    for (const metadata of <Record<string, string>[]>[
      { 'containerd-namespace-ttrpc': namespace },
      { 'containerd-namespace-ttrpc': 'another' },
      { 'containerd-namespace': namespace },
    ]) {
      assert.deepEqual(await task.unary('Connect', { id }, { metadata }), plain, JSON.stringify(metadata));
    }
  });

  test('a task it does not hold is NOT_FOUND; an unknown method UNIMPLEMENTED', async () => {
    const task = ttrpcService(client as TtrpcClient, protoRoot(), TASK);
    await assert.rejects(task.unary('State', { id }, { namespace }), (err: Error) => {
      return err instanceof NotFoundError && err.message === 'container not created: not found';
    });
    await assert.rejects(client?.call(TASK, 'Teleport', new Uint8Array()) as Promise<Buffer>, (err: Error) => {
      return err instanceof NotImplementedError && err.message === 'method Teleport';
    });
  });

  test('Shutdown answers, then the shim exits and removes its socket', async () => {
    const task = ttrpcService(client as TtrpcClient, protoRoot(), TASK);
    // The stock shim may exit before its answer leaves: containerd takes ttrpc's ErrClosed from
    // Shutdown as success, and so does this test (berth's runtime-v2 does the same).
    await task.unary('Shutdown', { id }, { namespace, timeoutMs: 5000 }).then(
      (res) => assert.deepEqual(res, {}),
      (err: Error) => {
        if (!(err instanceof UnavailableError && / closed$/.test(err.message))) throw err;
      },
    );
    const pid = shimPid as number;
    for (const deadline = Date.now() + 15_000; alive(pid) && Date.now() < deadline; ) await sleep(50);
    assert.equal(alive(pid), false, `shim ${pid} still running after Shutdown\n${shimLog}`);
    assert.equal(existsSync(ttrpcSocketPath(printed)), false);
    assert.deepEqual(forwarded, [], 'no task, so nothing to publish');
  });
});
