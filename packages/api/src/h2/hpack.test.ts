import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeaderListTooLargeError, HpackDecoder, HpackEncoder, HpackError, STATIC_TABLE } from './hpack.js';
import { EOS, HUFFMAN_CODES, huffmanDecode, huffmanEncode } from './huffman.js';

/** The RFC's hex dumps, spaces and line breaks allowed. */
const hex = (dump: string): Buffer => Buffer.from(dump.replace(/\s+/g, ''), 'hex');

/** An indexed field (§6.1), for indices past the 7-bit prefix too. */
function indexed(index: number): Buffer {
  if (index < 127) return Buffer.from([0x80 | index]);
  const bytes = [0xff];
  let rest = index - 127;
  for (; rest >= 0x80; rest = Math.floor(rest / 0x80)) bytes.push((rest & 0x7f) | 0x80);
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** A header list written the way Appendix C prints one. */
const list = (text: string): Array<[string, string]> =>
  text
    .trim()
    .split('\n')
    .map((line) => {
      const at = line.indexOf(': ', 1);
      return [line.slice(0, at).trim(), line.slice(at + 2)];
    });

test('the Huffman table: 257 distinct codes, complete and prefix-free, canonical, the RFC\'s known codes', () => {
  assert.equal(HUFFMAN_CODES.length, 257);
  assert.equal(new Set(HUFFMAN_CODES.map(([code, length]) => `${length}:${code}`)).size, 257);
  // Kraft: the sum of 2^-length is exactly 1 (scaled by 2^30, the longest code, everything is an integer).
  assert.equal(
    HUFFMAN_CODES.reduce((sum, [, length]) => sum + 2 ** (30 - length), 0),
    2 ** 30,
  );
  for (const [code, length] of HUFFMAN_CODES) assert.ok(code < 2 ** length && length >= 5 && length <= 30);
  // Canonical (§5.2's CANONICAL reference): ordered by length then symbol, each code is the previous plus one, shifted.
  const order = HUFFMAN_CODES.map(([code, length], symbol) => ({ code, length, symbol })).sort((a, b) => a.length - b.length || a.symbol - b.symbol);
  for (let i = 1; i < order.length; i++) {
    const prev = order[i - 1] as { code: number; length: number };
    const cur = order[i] as { code: number; length: number; symbol: number };
    assert.equal(cur.code, (prev.code + 1) * 2 ** (cur.length - prev.length), `symbol ${cur.symbol}`);
  }
  assert.deepEqual(HUFFMAN_CODES[48], [0x0, 5]); // '0'
  assert.deepEqual(HUFFMAN_CODES[97], [0x3, 5]); // 'a'
  assert.deepEqual(HUFFMAN_CODES[47], [0x18, 6]); // '/', §B's worked example
  assert.deepEqual(HUFFMAN_CODES[EOS], [0x3fffffff, 30]);
});

test('Huffman: every octet round-trips, alone and in random strings', () => {
  for (let byte = 0; byte < 256; byte++) {
    const text = String.fromCharCode(byte);
    const coded = huffmanEncode(text);
    assert.equal(huffmanDecode(coded, 0, coded.length), text, `octet ${byte}`);
  }
  let seed = 12345;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed >>> 16;
  };
  for (let round = 0; round < 300; round++) {
    let text = '';
    const length = random() % 200;
    for (let i = 0; i < length; i++) text += String.fromCharCode(round % 2 ? random() & 0xff : 0x20 + (random() % 95));
    const coded = huffmanEncode(text);
    assert.equal(huffmanDecode(coded, 0, coded.length), text);
  }
  assert.equal(huffmanDecode(Buffer.alloc(0), 0, 0), '');
  // Decoding a subrange of a larger buffer.
  const inner = huffmanEncode('custom-key');
  assert.equal(huffmanDecode(Buffer.concat([Buffer.from([1, 2]), inner, Buffer.from([3])]), 2, 2 + inner.length), 'custom-key');
});

test('the static table: 61 entries, each decoded by its index', () => {
  assert.equal(STATIC_TABLE.length, 61);
  assert.deepEqual(STATIC_TABLE[0], [':authority', '']);
  assert.deepEqual(STATIC_TABLE[7], [':status', '200']);
  assert.deepEqual(STATIC_TABLE[15], ['accept-encoding', 'gzip, deflate']);
  assert.deepEqual(STATIC_TABLE[60], ['www-authenticate', '']);
  const decoder = new HpackDecoder();
  for (const [i, entry] of STATIC_TABLE.entries()) assert.deepEqual(decoder.decode(indexed(i + 1)), [entry]);
  // And the encoder indexes each one whole.
  const encoder = new HpackEncoder();
  for (const [i, entry] of STATIC_TABLE.entries()) assert.deepEqual(encoder.encode([entry]), indexed(i + 1));
});

test("C.1's integers: 10 and 1337 behind a 5-bit prefix (size updates), 42 behind a 7-bit one (a string length)", () => {
  new HpackDecoder({ maxTableSize: 10 }).decode(hex('2a'));
  assert.throws(() => new HpackDecoder({ maxTableSize: 9 }).decode(hex('2a')), HpackError);
  new HpackDecoder({ maxTableSize: 1337 }).decode(hex('3f9a0a'));
  assert.throws(() => new HpackDecoder({ maxTableSize: 1336 }).decode(hex('3f9a0a')), HpackError);
  // A 42-octet value behind a 7-bit length prefix.
  const value = 'x'.repeat(42);
  assert.deepEqual(new HpackDecoder().decode(Buffer.concat([hex('0f10 2a'), Buffer.from(value)])), [['content-type', value]]);
});

test('C.2: literal with indexing, without indexing, never indexed; indexed', () => {
  const decoder = new HpackDecoder();
  assert.deepEqual(decoder.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')), [['custom-key', 'custom-header']]);
  assert.deepEqual(decoder.tableEntries(), [['custom-key', 'custom-header']]);
  assert.equal(decoder.tableSize, 55);

  const plain = new HpackDecoder();
  assert.deepEqual(plain.decode(hex('040c 2f73 616d 706c 652f 7061 7468')), [[':path', '/sample/path']]);
  assert.deepEqual(plain.tableEntries(), []);
  assert.deepEqual(plain.decode(hex('1008 7061 7373 776f 7264 0673 6563 7265 74')), [['password', 'secret']]);
  assert.deepEqual(plain.tableEntries(), []);
  assert.deepEqual(plain.decode(hex('82')), [[':method', 'GET']]);
  assert.equal(plain.tableSize, 0);
});

const C3_LISTS = [
  list(`
:method: GET
:scheme: http
:path: /
:authority: www.example.com`),
  list(`
:method: GET
:scheme: http
:path: /
:authority: www.example.com
cache-control: no-cache`),
  list(`
:method: GET
:scheme: https
:path: /index.html
:authority: www.example.com
custom-key: custom-value`),
];
const C3_TABLES: Array<[Array<[string, string]>, number]> = [
  [[[':authority', 'www.example.com']], 57],
  [
    [
      ['cache-control', 'no-cache'],
      [':authority', 'www.example.com'],
    ],
    110,
  ],
  [
    [
      ['custom-key', 'custom-value'],
      ['cache-control', 'no-cache'],
      [':authority', 'www.example.com'],
    ],
    164,
  ],
];

function decodeSequence(decoder: HpackDecoder, blocks: string[], lists: Array<Array<[string, string]>>, tables: Array<[Array<[string, string]>, number]>): void {
  blocks.forEach((block, i) => {
    assert.deepEqual(decoder.decode(hex(block)), lists[i], `block ${i + 1}`);
    const [entries, size] = tables[i] as [Array<[string, string]>, number];
    assert.deepEqual(decoder.tableEntries(), entries, `table after block ${i + 1}`);
    assert.equal(decoder.tableSize, size, `table size after block ${i + 1}`);
  });
}

test('C.3: three requests without Huffman on one connection', () => {
  decodeSequence(
    new HpackDecoder(),
    ['8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', '8286 84be 5808 6e6f 2d63 6163 6865', '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'],
    C3_LISTS,
    C3_TABLES,
  );
});

test('C.4: the same requests with Huffman', () => {
  decodeSequence(
    new HpackDecoder(),
    ['8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', '8286 84be 5886 a8eb 1064 9cbf', '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'],
    C3_LISTS,
    C3_TABLES,
  );
});

const C5_LISTS = [
  list(`
:status: 302
cache-control: private
date: Mon, 21 Oct 2013 20:13:21 GMT
location: https://www.example.com`),
  list(`
:status: 307
cache-control: private
date: Mon, 21 Oct 2013 20:13:21 GMT
location: https://www.example.com`),
  list(`
:status: 200
cache-control: private
date: Mon, 21 Oct 2013 20:13:22 GMT
location: https://www.example.com
content-encoding: gzip
set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1`),
];
const C5_TABLES: Array<[Array<[string, string]>, number]> = [
  [
    [
      ['location', 'https://www.example.com'],
      ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
      ['cache-control', 'private'],
      [':status', '302'],
    ],
    222,
  ],
  [
    [
      [':status', '307'],
      ['location', 'https://www.example.com'],
      ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
      ['cache-control', 'private'],
    ],
    222,
  ],
  [
    [
      ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
      ['content-encoding', 'gzip'],
      ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
    ],
    215,
  ],
];

test('C.5: three responses without Huffman, a 256-byte table, evictions', () => {
  decodeSequence(
    new HpackDecoder({ maxTableSize: 256 }),
    [
      `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
       2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
      '4803 3330 37c1 c0bf',
      `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
       54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
       5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
    ],
    C5_LISTS,
    C5_TABLES,
  );
});

test('C.6: the same responses with Huffman', () => {
  decodeSequence(
    new HpackDecoder({ maxTableSize: 256 }),
    [
      `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
       2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
      '4883 640e ffc1 c0bf',
      `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
       77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
       9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
    ],
    C5_LISTS,
    C5_TABLES,
  );
});

test('malformed blocks throw HpackError', () => {
  const cases: Array<[string, string]> = [
    ['80', 'indexed field with index 0'],
    ['be', 'index 62 with an empty dynamic table'],
    ['7e 0161', 'literal whose indexed name is past the table'],
    ['ff ffffffff07', 'integer over 2^31 - 1'],
    ['ff 808080808000', 'integer with 6 continuation octets'],
    ['ff 80', 'block ends inside an integer'],
    ['40', 'block ends before the name'],
    ['0005 6162', 'string runs past the block'],
    ['3fe21f', 'size update to 4097, over the 4096 advertised'],
    ['82 20', 'size update after a field'],
    ['0f10 84 ffffffff', 'Huffman string that is EOS plus padding'],
    ['0f10 85 fffffffc 00', 'EOS then more bits'],
    ['0f10 82 1fff', "'a' then 11 bits of padding"],
    ['0f10 81 ff', 'a whole octet of padding'],
    ['0f10 81 18', "'a' then padding of zeros"],
  ];
  for (const [block, why] of cases) assert.throws(() => new HpackDecoder().decode(hex(block)), HpackError, why);
  // The largest integer accepted: 2^31 - 1 as a size update (refused only as over the limit, not as an integer).
  assert.throws(
    () => new HpackDecoder().decode(hex('3f e0ffffff07')),
    (err: Error) => err instanceof HpackError && /over the advertised/.test(err.message),
  );
});

test('size updates: several at the start are fine, 0 empties the table, entries larger than it are not kept', () => {
  const decoder = new HpackDecoder();
  decoder.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
  assert.deepEqual(decoder.decode(hex('20 3f e11f 82')), [[':method', 'GET']]);
  assert.equal(decoder.tableSize, 0);
  assert.throws(() => decoder.decode(hex('be')), HpackError);
  // Table limit 54 now cannot hold custom-key: custom-header (55): adding it empties the table instead.
  decoder.decode(hex('3f17 4006 6163 6365 7074 00'));
  assert.deepEqual(decoder.tableEntries(), [['accept', '']]);
  assert.deepEqual(decoder.decode(hex('be 400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')), [
    ['accept', ''],
    ['custom-key', 'custom-header'],
  ]);
  assert.deepEqual(decoder.tableEntries(), []);
});

test('a large dynamic table grows past its first ring and keeps indices right', () => {
  const decoder = new HpackDecoder({ maxTableSize: 65536 });
  const parts: Buffer[] = [];
  for (let i = 0; i < 300; i++) parts.push(Buffer.concat([hex('40 03'), Buffer.from(`k${String(i).padStart(2, '0').slice(-2)}`), hex('04'), Buffer.from(String(i).padStart(4, '0'))]));
  decoder.decode(Buffer.concat(parts));
  assert.equal(decoder.tableEntries().length, 300);
  assert.equal(decoder.tableSize, 300 * (3 + 4 + 32));
  // 62 is the newest (299); 62 + 299 the oldest (0). Index 62 + 300 is past the end.
  const fetch = (index: number) => decoder.decode(indexed(index))[0];
  assert.deepEqual(fetch(62), ['k99', '0299']);
  assert.deepEqual(fetch(62 + 150), ['k49', '0149']);
  assert.deepEqual(fetch(62 + 299), ['k00', '0000']);
  assert.throws(() => fetch(62 + 300), HpackError);
});

test('the header list limit: at it decodes, past it throws HeaderListTooLargeError with the table still in step', () => {
  // custom-key: custom-header is 55 by RFC 7540's measure.
  const block = hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572');
  assert.deepEqual(new HpackDecoder({ maxHeaderListSize: 55 }).decode(block), [['custom-key', 'custom-header']]);
  const decoder = new HpackDecoder({ maxHeaderListSize: 54 });
  assert.throws(
    () => decoder.decode(block),
    (err: unknown) => err instanceof HeaderListTooLargeError && err instanceof HpackError && err.tooLarge && err.size === 55 && err.limit === 54,
  );
  // The entry went into the table all the same; a later block may refer to it (and the limit is per block).
  assert.deepEqual(decoder.tableEntries(), [['custom-key', 'custom-header']]);
  assert.deepEqual(decoder.decode(hex('82')), [[':method', 'GET']]);
  assert.throws(() => decoder.decode(hex('be')), HeaderListTooLargeError);
  // Malformed beats too large: the error is the plain kind when the block is broken after the limit was passed.
  assert.throws(
    () => new HpackDecoder({ maxHeaderListSize: 40 }).decode(hex('82 82 80')),
    (err: unknown) => err instanceof HpackError && !(err instanceof HeaderListTooLargeError),
  );
});

test('any octet in names and values survives as latin1; a Uint8Array block is as good as a Buffer', () => {
  let value = '';
  for (let byte = 0; byte < 256; byte++) value += String.fromCharCode(byte);
  const encoded = new HpackEncoder().encode([['x-bin', value]]);
  assert.deepEqual(new HpackDecoder().decode(new Uint8Array(encoded)), [['x-bin', value]]);
  const offset = new Uint8Array(encoded.length + 3);
  offset.set(encoded, 3);
  assert.deepEqual(new HpackDecoder().decode(offset.subarray(3)), [['x-bin', value]]);
  // Above U+00FF only the low byte goes out, as Buffer's latin1 writes it, short strings or long.
  const wide = new HpackEncoder().encode([
    ['x-wide', '\u0141'],
    ['x-wide', '\u0141'.repeat(40)],
  ]);
  assert.deepEqual(new HpackDecoder().decode(wide), [
    ['x-wide', 'A'],
    ['x-wide', 'A'.repeat(40)],
  ]);
});

test('the encoder: static fields indexed whole, static names indexed, the rest literal, never added to a table', () => {
  const encoder = new HpackEncoder();
  assert.deepEqual([...encoder.encode([[':status', '200']])], [0x88]);
  assert.deepEqual([...encoder.encode([[':method', 'POST']])], [0x83]);
  assert.deepEqual([...encoder.encode([['accept-encoding', 'gzip, deflate']])], [0x90]);
  // content-type is index 31: past a 4-bit prefix, so 0x0f then 31 - 15.
  assert.deepEqual(encoder.encode([['content-type', 'application/grpc']]), Buffer.concat([hex('0f10 10'), Buffer.from('application/grpc')]));
  assert.deepEqual(encoder.encode([[':status', '201']]), Buffer.concat([hex('08 03'), Buffer.from('201')]));
  assert.deepEqual(encoder.encode([['grpc-status', '0']]), Buffer.concat([hex('00 0b'), Buffer.from('grpc-status'), hex('01'), Buffer.from('0')]));
  assert.deepEqual(encoder.encode([]), Buffer.alloc(0));

  const response = [
    [':status', '200'],
    ['content-type', 'application/grpc'],
    ['grpc-accept-encoding', 'identity'],
  ] as const;
  const trailers = [
    ['grpc-status', '5'],
    ['grpc-message', 'not found: container %22abc%22%0A100%25'],
  ] as const;
  const long: Array<[string, string]> = [
    ['x-long', 'v'.repeat(5000)],
    ['y'.repeat(200), ''],
    [':authority', ''],
  ];
  const decoder = new HpackDecoder();
  for (const headers of [response, trailers, long, response, trailers]) {
    assert.deepEqual(decoder.decode(encoder.encode(headers)), headers.map(([name, value]) => [name, value]));
    assert.equal(decoder.tableSize, 0, 'nothing indexed');
  }
});
