import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatBytes, lineProgress, tableProgress, TransferTracker, type TransferProgress } from './progress.js';

const D = `sha256:${'ab'.repeat(32)}`;

describe('progress', () => {
  it('formats sizes', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(30 * 1024 * 1024), '30.0 MiB');
  });

  it('prints one quiet line per finished blob, none for manifests', () => {
    let out = '';
    const r = lineProgress((t) => {
      out += t;
    });
    const layer = new TransferTracker(D, 'layer', 2048, r.listener);
    layer.start('downloading', 1024);
    layer.progress(2048);
    layer.end('done');
    new TransferTracker(D, 'manifest', 10, r.listener).end('done');
    new TransferTracker(D, 'config', 10, r.listener).end('exists');
    const lines = out.trimEnd().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines[0] ?? '', /^abababababab done 2\.0 KiB \S+ \S+\/s \(resumed at 1\.0 KiB\)$/);
    assert.equal(lines[1], 'abababababab exists 10 B');
  });

  it('redraws a table in place on a terminal', () => {
    let out = '';
    const r = tableProgress((t) => {
      out += t;
    }, { intervalMs: 0 });
    const p: TransferProgress = { digest: D, kind: 'layer', status: 'downloading', offset: 512, total: 1024, resumedFrom: 0, rate: 100, elapsed: 5 };
    r.listener(p);
    r.listener({ ...p, offset: 1024, status: 'done' });
    r.finish();
    assert.match(out, /layer abababababab\s+downloading\s+\|\+{20}-{20}\| 512 B\/1\.0 KiB/);
    assert.ok(out.includes('\x1b[2A'), 'moves up over the two lines drawn before');
    assert.match(out, /done\s+\|\+{40}\| 1\.0 KiB/);
  });
});
