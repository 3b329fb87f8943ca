import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { FifoSet, removeContainerFifos, removeFifoDir } from './fifo-set.js';
import { ProcessIO } from './process-io.js';

/*
 * The client's half of task stdio, with `sh` playing the shim: it opens the
 * other FIFO ends as containerd's runc shim does (stdout/stderr for writing,
 * stdin for reading).
 */

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'berth-fifo-test-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

const collect = () => {
  const s = new PassThrough();
  let text = '';
  s.on('data', (d: Buffer) => {
    text += d.toString();
  });
  return { stream: s, text: () => text };
};

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check(), 'timed out');
}

/** A pretend shim: `script` runs with $IN, $OUT, $ERR set to the FIFO paths. */
function shim(fifos: FifoSet, script: string) {
  const child = spawn('sh', ['-c', script], { env: { ...process.env, IN: fifos.stdin, OUT: fifos.stdout, ERR: fifos.stderr }, stdio: 'ignore' });
  return once(child, 'exit');
}

describe('FifoSet', () => {
  it('makes private FIFOs under <root>/<namespace>/<container>/<process>-XXXXXX', async () => {
    const fifos = await FifoSet.create({ root, namespace: 'ns', containerId: 'c1', processId: 'c1', stdin: true });
    assert.equal(dirname(fifos.dir), join(root, 'ns', 'c1'));
    assert.match(basename(fifos.dir), /^c1-/);
    for (const p of [fifos.stdin, fifos.stdout, fifos.stderr]) {
      const st = statSync(p);
      assert.ok(st.isFIFO(), p);
      assert.equal(st.mode & 0o777, 0o700);
    }
    assert.equal(basename(fifos.stdout), 'c1-stdout');
    await fifos.remove();
    assert.equal(existsSync(fifos.dir), false);
    // The emptied container and namespace folders go too.
    assert.equal(existsSync(join(root, 'ns')), false);
  });

  it('gives a terminal one output and no stdin unless asked', async () => {
    const tty = await FifoSet.create({ root, namespace: 'ns', containerId: 'c2', processId: 'e1', terminal: true, stdin: true });
    assert.equal(tty.stderr, '');
    assert.ok(tty.stdin && tty.stdout);
    const plain = await FifoSet.create({ root, namespace: 'ns', containerId: 'c2', processId: 'e2' });
    assert.equal(plain.stdin, '');
    await removeContainerFifos('ns', 'c2', root);
    assert.equal(existsSync(join(root, 'ns', 'c2')), false);
  });

  it('removes only folders of its own layout under its root', async () => {
    assert.equal(await removeFifoDir({ stdout: '/etc/passwd' }, root), false);
    assert.equal(await removeFifoDir({ stdout: join(root, 'x') }, root), false);
    assert.equal(await removeFifoDir({}, root), false);
    await removeContainerFifos('..', 'x', root);
    assert.ok(existsSync(root));
  });
});

describe('ProcessIO', () => {
  it('copies stdin in and stdout/stderr out until the shim closes them', async () => {
    const fifos = await FifoSet.create({ root, namespace: 'ns', containerId: 'c3', processId: 'c3', stdin: true });
    const out = collect();
    const err = collect();
    const io = await ProcessIO.attach(fifos, { stdin: Readable.from(['hello ', 'world\n']), stdout: out.stream, stderr: err.stream });
    const exited = shim(fifos, 'exec 3<"$IN" 4>"$ERR"; echo opened >&4; cat <&3 > "$OUT"; echo done >&4');
    // Our stdin end may close only once the shim holds the FIFO (the task exists): a FIFO nobody holds drops its data.
    await until(() => err.text().includes('opened'));
    let closed = 0;
    io.onStdinEnd(async () => {
      closed++;
    });
    await io.wait();
    await exited;
    assert.equal(out.text(), 'hello world\n');
    assert.equal(err.text(), 'opened\ndone\n');
    assert.equal(closed, 1);
    io.close();
    await fifos.remove();
  });

  it('keeps what was written before the shim opened stdin', async () => {
    const fifos = await FifoSet.create({ root, namespace: 'ns', containerId: 'c4', processId: 'c4', stdin: true });
    const out = collect();
    const err = collect();
    const io = await ProcessIO.attach(fifos, { stdin: Readable.from(['early\n']), stdout: out.stream, stderr: err.stream });
    // The input has ended before the shim comes.
    await new Promise((r) => setTimeout(r, 100));
    const exited = shim(fifos, 'exec 3<"$IN" 4>"$ERR"; echo opened >&4; cat <&3 > "$OUT"');
    await until(() => err.text().includes('opened'));
    io.onStdinEnd(async () => {});
    await io.wait();
    await exited;
    assert.equal(out.text(), 'early\n');
    io.close();
    await fifos.remove();
  });

  it('never ends a terminal\'s input from our side', async () => {
    const fifos = await FifoSet.create({ root, namespace: 'ns', containerId: 'c7', processId: 'c7', stdin: true, terminal: true });
    const out = collect();
    const io = await ProcessIO.attach(fifos, { stdin: Readable.from(['typed\n']), stdout: out.stream });
    // The shim's console copy reads one line, then reports whether its input ended (read fails at once) or not (times out).
    const exited = shim(fifos, 'exec 3<"$IN"; read -r l <&3; echo "$l" > "$OUT.tmp"; timeout 1 sh -c "read -r x <&3"; [ $? = 124 ] && echo open >> "$OUT.tmp" || echo ended >> "$OUT.tmp"; cat "$OUT.tmp" > "$OUT"; rm "$OUT.tmp"');
    await new Promise((r) => setTimeout(r, 100));
    let closed = 0;
    io.onStdinEnd(async () => {
      closed++;
    });
    await io.wait();
    await exited;
    assert.equal(out.text(), 'typed\nopen\n');
    assert.equal(closed, 0);
    io.close();
    await fifos.remove();
  });

  it('drains output nobody reads, so the process never blocks on it', async () => {
    const fifos = await FifoSet.create({ root, namespace: 'ns', containerId: 'c5', processId: 'c5' });
    const io = await ProcessIO.attach(fifos, {});
    const exited = shim(fifos, 'head -c 1000000 /dev/zero > "$OUT"; : > "$ERR"');
    await io.wait();
    await exited;
    io.close();
    await fifos.remove();
  });

  it('holds reader ends open for a detached start, then lets go', async () => {
    const fifos = await FifoSet.create({ root, namespace: 'ns', containerId: 'c6', processId: 'c6' });
    const readers = fifos.holdReaders();
    // A blocking open for writing returns at once while a reader is there.
    const exited = shim(fifos, 'echo x > "$OUT"; echo y > "$ERR"');
    const [code] = await exited;
    assert.equal(code, 0);
    readers.release();
    readers.release();
    await fifos.remove();
  });
});
