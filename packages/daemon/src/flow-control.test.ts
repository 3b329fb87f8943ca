import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '@berth/core';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES, widenFlowControlWindows } from './flow-control.js';

test('a client of the gRPC server sees 4 MiB stream windows and a 16 MiB connection window', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-flow-'));
  const socket = join(dir, 'grpc.sock');
  const server = new grpc.Server();
  const widen = widenFlowControlWindows(server, silentLogger);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  widen();
  const client = http2Connect('http://localhost', { createConnection: () => netConnect(socket) });
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('remoteSettings', () => resolve());
      client.once('error', reject);
    });
    assert.equal(client.remoteSettings.initialWindowSize, STREAM_WINDOW_BYTES);
    // The connection window comes as a WINDOW_UPDATE right after the settings.
    for (const deadline = Date.now() + 2000; (client.state.remoteWindowSize ?? 0) < CONNECTION_WINDOW_BYTES && Date.now() < deadline; ) {
      await sleep(10);
    }
    assert.equal(client.state.remoteWindowSize, CONNECTION_WINDOW_BYTES);
  } finally {
    client.destroy();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});
