import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDdSeconds, parseOpensslSpeed } from './machine-limits.js';

test('openssl speed: the 1 MiB column, in 1000s of bytes per second', () => {
  const out = `CPUINFO: OPENSSL_ia32cap=0xfffa3203078bffff:0x405fc6f1bf07ab
The 'numbers' are in 1000s of bytes per second processed.
type        1048576 bytes
sha256         1814036.48k
`;
  assert.equal(parseOpensslSpeed(out), 1814.03648);
  assert.equal(parseOpensslSpeed('no numbers here'), undefined);
});

test("dd's elapsed seconds, with either decimal mark", () => {
  assert.equal(parseDdSeconds('256+0 records in\n256+0 records out\n268435456 bytes (268 MB, 256 MiB) copied, 0.52331 s, 513 MB/s\n'), 0.52331);
  assert.equal(parseDdSeconds('268435456 Bytes (268 MB, 256 MiB) copied, 1,5 s, 179 MB/s'), 1.5);
  assert.equal(parseDdSeconds(''), undefined);
});
