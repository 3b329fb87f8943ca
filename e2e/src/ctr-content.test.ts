import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ctr, startBerthd, type TestDaemon } from './harness.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blobPath = (d: TestDaemon, digest: string) =>
  join(d.root, 'io.containerd.content.v1.content', 'blobs', 'sha256', digest.slice('sha256:'.length));

/** Debian's ctr driving berthd's content and leases services. */
describe('ctr content and leases against berthd', () => {
  let d: TestDaemon;

  before(async () => {
    d = await startBerthd({ config: '[plugins."io.containerd.gc.v1.scheduler"]\nschedule_delay_ms = 10\n' });
  });
  after(async () => {
    await d?.cleanup();
  });

  test('ingest, ls, get, label, rm; GC removes the blob from disk', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const digest = sha256(data);
    let r = await ctr(d, ['content', 'ingest', '--expected-digest', digest, '--expected-size', String(data.length), 'ref-1'], {
      input: data,
    });
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d, ['content', 'ls']);
    assert.match(r.stdout, new RegExp(`${digest}\\s+3\\.\\d+MB`));
    r = await ctr(d, ['content', 'get', digest], { binary: true });
    assert.equal(sha256(r.stdoutBytes), digest);
    r = await ctr(d, ['content', 'label', digest, 'owner=e2e']);
    assert.equal(r.code, 0, r.stderr);
    assert.match((await ctr(d, ['content', 'ls'])).stdout, /owner=e2e/);
    // Other namespaces do not see it.
    assert.doesNotMatch((await ctr(d, ['-n', 'other', 'content', 'ls'])).stdout, new RegExp(digest));
    assert.ok(existsSync(blobPath(d, digest)));
    r = await ctr(d, ['content', 'rm', digest]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(() => !existsSync(blobPath(d, digest)), 'blob removed by GC');
  });

  test('a digest mismatch at commit is refused, leaves no blob, and the ingest stays resumable', async () => {
    const data = randomBytes(100_000);
    const wrong = sha256(Buffer.from('something else'));
    const r = await ctr(d, ['content', 'ingest', '--expected-digest', wrong, 'ref-mismatch'], { input: data });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unexpected commit digest .* expected .*: failed precondition/);
    assert.equal(existsSync(blobPath(d, wrong)), false);
    assert.equal(existsSync(blobPath(d, sha256(data))), false);
    const active = await ctr(d, ['content', 'active']);
    assert.match(active.stdout, /ref-mismatch/);
    // The same ref with the right digest resumes (ctr seeks its input, so give it a file) and commits.
    const file = join(d.dir, 'mismatch.bin');
    writeFileSync(file, data);
    const ok = await ctr(d, ['content', 'ingest', '--expected-digest', sha256(data), 'ref-mismatch'], { stdinFile: file });
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(existsSync(blobPath(d, sha256(data))));
  });

  test('leases create, ls and rm', async () => {
    let r = await ctr(d, ['leases', 'create', '--id', 'lease-e2e', '--expires', '1h', 'purpose=test']);
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d, ['leases', 'ls']);
    assert.match(r.stdout, /lease-e2e\s+\S+\s+.*purpose=test/);
    assert.match(r.stdout, /containerd\.io\/gc\.expire=/);
    r = await ctr(d, ['leases', 'create', '--id', 'lease-e2e']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /already exists/);
    r = await ctr(d, ['leases', 'rm', 'lease-e2e']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch((await ctr(d, ['leases', 'ls'])).stdout, /lease-e2e/);
  });
});

describe('an interrupted ingest across a daemon crash', () => {
  test('a client killed mid-write resumes after berthd is SIGKILLed and restarted', async () => {
    const first = await startBerthd();
    try {
      const data = randomBytes(8 * 1024 * 1024);
      const digest = sha256(data);
      // Feed half, then kill ctr while it waits for the rest.
      const child = spawn('ctr', ['--address', first.address, 'content', 'ingest', '--expected-digest', digest, 'resumable'], {
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      // Killing ctr below breaks the pipe under the write still in flight.
      child.stdin.on('error', () => {});
      child.stdin.write(data.subarray(0, data.length / 2));
      let offset = 0;
      await waitFor(async () => {
        const m = /resumable\s+([\d.]+)\s*(MiB|MB|kB|KiB|B)/.exec((await ctr(first, ['content', 'active'])).stdout);
        offset = m ? Number(m[1]) : 0;
        return offset >= 3;
      }, 'half the data ingested');
      child.kill('SIGKILL');
      await first.stop('SIGKILL');

      const second = await startBerthd({ dir: first.dir });
      try {
        assert.match((await ctr(second, ['content', 'active'])).stdout, /resumable/);
        // ctr commits outside any lease, so, as with containerd, a collection after the commit would
        // take the blob: let the start-up collection pass first.
        await waitFor(() => /"msg":"garbage collected"/.test(second.logs()), 'the start-up garbage collection');
        const file = join(second.dir, 'resumable.bin');
        writeFileSync(file, data);
        const r = await ctr(second, ['content', 'ingest', '--expected-digest', digest, 'resumable'], { stdinFile: file });
        assert.equal(r.code, 0, r.stderr);
        const got = await ctr(second, ['content', 'get', digest], { binary: true });
        assert.equal(got.stdoutBytes.length, data.length, got.stderr);
        assert.equal(sha256(got.stdoutBytes), digest);
        assert.doesNotMatch((await ctr(second, ['content', 'active'])).stdout, /resumable/);
      } finally {
        await second.stop();
      }
    } finally {
      await first.cleanup();
    }
  });
});

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeout = 10_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

