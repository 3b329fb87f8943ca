import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const index = fileURLToPath(new URL('./index.js', import.meta.url));

test('a started berthd, every built-in plugin loaded, has not loaded @grpc/grpc-js', () => {
  // berthd serves gRPC on its own HTTP/2 server side (GrpcServer); grpc-js is its clients' library. It comes back
  // when a module berthd loads imports @berth/api's main entry instead of /protocol or /server.
  const dir = mkdtempSync(join(tmpdir(), 'berth-modules-'));
  try {
    const script = `
      import { createRequire } from 'node:module';
      const { parseConfig, startDaemon } = await import(${JSON.stringify(index)});
      const dir = ${JSON.stringify(dir)};
      const config = parseConfig('', 'test', { root: dir + '/root', state: dir + '/state', address: dir + '/berthd.sock', logLevel: 'error' });
      const daemon = await startDaemon(config);
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((m) => m.includes('@grpc/grpc-js'));
      await daemon.close();
      process.stdout.write(JSON.stringify(loaded));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.deepEqual(JSON.parse(out), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
