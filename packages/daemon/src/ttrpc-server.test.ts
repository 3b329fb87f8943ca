import { encodeMessage, protoRoot } from '@berth/api';
import { EventExchangeImpl, silentLogger } from '@berth/core';
import { type Envelope, InvalidArgumentError } from '@berth/plugin-api';
import { TtrpcClient, ttrpcService } from '@berth/ttrpc';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startTtrpcServer, TTRPC_EVENTS_SERVICE } from './ttrpc-server.js';

test('shims forward envelopes over ttrpc into the exchange, namespace and timestamp kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-ttrpc-server-'));
  const socket = join(dir, 'berthd.sock.ttrpc');
  const exchange = new EventExchangeImpl();
  const server = await startTtrpcServer(socket, exchange, silentLogger);
  const client = new TtrpcClient(socket);
  const abort = new AbortController();
  try {
    assert.equal(statSync(socket).mode & 0o777, 0o600);
    const received: Envelope[] = [];
    const consumer = (async () => {
      for await (const env of exchange.subscribe(['topic~="^/tasks/"'], abort.signal)) received.push(env);
    })();
    await new Promise((r) => setImmediate(r));

    const events = ttrpcService(client, protoRoot(), TTRPC_EVENTS_SERVICE);
    const exit = encodeMessage(protoRoot().lookupType('containerd.events.TaskExit'), { containerId: 'c1', id: 'c1', pid: 42, exitStatus: 3 });
    const envelope = {
      timestamp: { seconds: 1_700_000_000, nanos: 123_000_000 },
      namespace: 'shim-ns',
      topic: '/tasks/exit',
      event: { type_url: 'containerd.events.TaskExit', value: exit },
    };
    // The shim's namespace header says nothing about the envelope's.
    assert.deepEqual(await events.unary('Forward', { envelope }, { namespace: 'other' }), {});
    await assert.rejects(events.unary('Forward', {}), InvalidArgumentError);
    await new Promise((r) => setTimeout(r, 20));
    abort.abort();
    await consumer;
    assert.equal(received.length, 1);
    const [env] = received as [Envelope];
    assert.deepEqual([env.namespace, env.topic, env.timestamp.getTime()], ['shim-ns', '/tasks/exit', 1_700_000_000_123]);
    assert.equal(env.event.typeUrl, 'containerd.events.TaskExit');
    assert.deepEqual(Buffer.from(env.event.value as Uint8Array), exit, 'the payload as the shim sent it');
    assert.equal((env.event.data as { exitStatus: number }).exitStatus, 3);
  } finally {
    client.close();
    await server.close();
    assert.equal(existsSync(socket), false);
    rmSync(dir, { recursive: true, force: true });
  }
});
