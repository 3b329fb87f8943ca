import type { Logger } from '@berth/plugin-api';
import { TtrpcServer } from '@berth/ttrpc';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { EventPublisher } from './event-publisher.js';
import { EVENTS_SERVICE, shimProtoRoot } from './shim-proto.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };
const dir = mkdtempSync(join(tmpdir(), 'berth-shim-events-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('events go out in order, after the turn that queued them, stamped when they were queued', async () => {
  const received: { namespace: string; topic: string; seconds: number }[] = [];
  const server = new TtrpcServer({ log: quiet });
  server.register(shimProtoRoot(), EVENTS_SERVICE, {
    forward: async (r: { envelope: { namespace: string; topic: string; timestamp: { seconds: number } } }) => {
      received.push({ namespace: r.envelope.namespace, topic: r.envelope.topic, seconds: Number(r.envelope.timestamp.seconds) });
      return {};
    },
  });
  const socket = join(dir, 'events.sock');
  await server.listen(socket);
  const publisher = new EventPublisher(`unix://${socket}`, quiet);
  try {
    const queuedAt = Math.floor(Date.now() / 1000);
    publisher.publish('ns', '/tasks/create', 'containerd.events.TaskCreate', { containerId: 'c1', pid: 10 });
    publisher.publish('ns', '/tasks/start', 'containerd.events.TaskStart', { containerId: 'c1', pid: 10 });
    await Promise.resolve();
    await new Promise((resolve) => process.nextTick(resolve));
    // Nothing encoded, connected or sent in the turn that queued them: the answer to the call goes first.
    assert.equal(Reflect.get(publisher, 'client'), undefined);
    await publisher.drain(5000);
    publisher.publish('ns2', '/tasks/exit', 'containerd.events.TaskExit', { containerId: 'c1', pid: 10, exitStatus: 0 });
    await publisher.drain(5000);
    assert.deepEqual(
      received.map((e) => [e.namespace, e.topic]),
      [
        ['ns', '/tasks/create'],
        ['ns', '/tasks/start'],
        ['ns2', '/tasks/exit'],
      ],
    );
    for (const e of received) assert.ok(Math.abs(e.seconds - queuedAt) <= 2, String(e.seconds));
  } finally {
    publisher.close();
    await server.close();
  }
});
