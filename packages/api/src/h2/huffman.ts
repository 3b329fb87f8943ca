/**
 * HPACK's static Huffman code (RFC 7541 §5.2, Appendix B). Decoding is table
 * driven: the code's 256 internal tree nodes are the states of a machine that
 * eats 4 bits at a time, built once at module load, so a string costs two
 * array loads per input byte and no allocation beyond the result.
 */

/**
 * Appendix B, in symbol order: [code, length in bits], the code aligned to
 * the least significant bit. Symbol 256 is EOS.
 */
export const HUFFMAN_CODES: ReadonlyArray<readonly [number, number]> = [
  // 0-31: control characters
  [0x1ff8, 13], [0x7fffd8, 23], [0xfffffe2, 28], [0xfffffe3, 28], [0xfffffe4, 28], [0xfffffe5, 28], [0xfffffe6, 28], [0xfffffe7, 28],
  [0xfffffe8, 28], [0xffffea, 24], [0x3ffffffc, 30], [0xfffffe9, 28], [0xfffffea, 28], [0x3ffffffd, 30], [0xfffffeb, 28], [0xfffffec, 28],
  [0xfffffed, 28], [0xfffffee, 28], [0xfffffef, 28], [0xffffff0, 28], [0xffffff1, 28], [0xffffff2, 28], [0x3ffffffe, 30], [0xffffff3, 28],
  [0xffffff4, 28], [0xffffff5, 28], [0xffffff6, 28], [0xffffff7, 28], [0xffffff8, 28], [0xffffff9, 28], [0xffffffa, 28], [0xffffffb, 28],
  // 32-47: ' ' ! " # $ % & ' ( ) * + , - . /
  [0x14, 6], [0x3f8, 10], [0x3f9, 10], [0xffa, 12], [0x1ff9, 13], [0x15, 6], [0xf8, 8], [0x7fa, 11],
  [0x3fa, 10], [0x3fb, 10], [0xf9, 8], [0x7fb, 11], [0xfa, 8], [0x16, 6], [0x17, 6], [0x18, 6],
  // 48-63: 0-9 : ; < = > ?
  [0x0, 5], [0x1, 5], [0x2, 5], [0x19, 6], [0x1a, 6], [0x1b, 6], [0x1c, 6], [0x1d, 6],
  [0x1e, 6], [0x1f, 6], [0x5c, 7], [0xfb, 8], [0x7ffc, 15], [0x20, 6], [0xffb, 12], [0x3fc, 10],
  // 64-79: @ A-O
  [0x1ffa, 13], [0x21, 6], [0x5d, 7], [0x5e, 7], [0x5f, 7], [0x60, 7], [0x61, 7], [0x62, 7],
  [0x63, 7], [0x64, 7], [0x65, 7], [0x66, 7], [0x67, 7], [0x68, 7], [0x69, 7], [0x6a, 7],
  // 80-95: P-Z [ \ ] ^ _
  [0x6b, 7], [0x6c, 7], [0x6d, 7], [0x6e, 7], [0x6f, 7], [0x70, 7], [0x71, 7], [0x72, 7],
  [0xfc, 8], [0x73, 7], [0xfd, 8], [0x1ffb, 13], [0x7fff0, 19], [0x1ffc, 13], [0x3ffc, 14], [0x22, 6],
  // 96-111: ` a-o
  [0x7ffd, 15], [0x3, 5], [0x23, 6], [0x4, 5], [0x24, 6], [0x5, 5], [0x25, 6], [0x26, 6],
  [0x27, 6], [0x6, 5], [0x74, 7], [0x75, 7], [0x28, 6], [0x29, 6], [0x2a, 6], [0x7, 5],
  // 112-127: p-z { | } ~ DEL
  [0x2b, 6], [0x76, 7], [0x2c, 6], [0x8, 5], [0x9, 5], [0x2d, 6], [0x77, 7], [0x78, 7],
  [0x79, 7], [0x7a, 7], [0x7b, 7], [0x7ffe, 15], [0x7fc, 11], [0x3ffd, 14], [0x1ffd, 13], [0xffffffc, 28],
  // 128-255
  [0xfffe6, 20], [0x3fffd2, 22], [0xfffe7, 20], [0xfffe8, 20], [0x3fffd3, 22], [0x3fffd4, 22], [0x3fffd5, 22], [0x7fffd9, 23],
  [0x3fffd6, 22], [0x7fffda, 23], [0x7fffdb, 23], [0x7fffdc, 23], [0x7fffdd, 23], [0x7fffde, 23], [0xffffeb, 24], [0x7fffdf, 23],
  [0xffffec, 24], [0xffffed, 24], [0x3fffd7, 22], [0x7fffe0, 23], [0xffffee, 24], [0x7fffe1, 23], [0x7fffe2, 23], [0x7fffe3, 23],
  [0x7fffe4, 23], [0x1fffdc, 21], [0x3fffd8, 22], [0x7fffe5, 23], [0x3fffd9, 22], [0x7fffe6, 23], [0x7fffe7, 23], [0xffffef, 24],
  [0x3fffda, 22], [0x1fffdd, 21], [0xfffe9, 20], [0x3fffdb, 22], [0x3fffdc, 22], [0x7fffe8, 23], [0x7fffe9, 23], [0x1fffde, 21],
  [0x7fffea, 23], [0x3fffdd, 22], [0x3fffde, 22], [0xfffff0, 24], [0x1fffdf, 21], [0x3fffdf, 22], [0x7fffeb, 23], [0x7fffec, 23],
  [0x1fffe0, 21], [0x1fffe1, 21], [0x3fffe0, 22], [0x1fffe2, 21], [0x7fffed, 23], [0x3fffe1, 22], [0x7fffee, 23], [0x7fffef, 23],
  [0xfffea, 20], [0x3fffe2, 22], [0x3fffe3, 22], [0x3fffe4, 22], [0x7ffff0, 23], [0x3fffe5, 22], [0x3fffe6, 22], [0x7ffff1, 23],
  [0x3ffffe0, 26], [0x3ffffe1, 26], [0xfffeb, 20], [0x7fff1, 19], [0x3fffe7, 22], [0x7ffff2, 23], [0x3fffe8, 22], [0x1ffffec, 25],
  [0x3ffffe2, 26], [0x3ffffe3, 26], [0x3ffffe4, 26], [0x7ffffde, 27], [0x7ffffdf, 27], [0x3ffffe5, 26], [0xfffff1, 24], [0x1ffffed, 25],
  [0x7fff2, 19], [0x1fffe3, 21], [0x3ffffe6, 26], [0x7ffffe0, 27], [0x7ffffe1, 27], [0x3ffffe7, 26], [0x7ffffe2, 27], [0xfffff2, 24],
  [0x1fffe4, 21], [0x1fffe5, 21], [0x3ffffe8, 26], [0x3ffffe9, 26], [0xffffffd, 28], [0x7ffffe3, 27], [0x7ffffe4, 27], [0x7ffffe5, 27],
  [0xfffec, 20], [0xfffff3, 24], [0xfffed, 20], [0x1fffe6, 21], [0x3fffe9, 22], [0x1fffe7, 21], [0x1fffe8, 21], [0x7ffff3, 23],
  [0x3fffea, 22], [0x3fffeb, 22], [0x1ffffee, 25], [0x1ffffef, 25], [0xfffff4, 24], [0xfffff5, 24], [0x3ffffea, 26], [0x7ffff4, 23],
  [0x3ffffeb, 26], [0x7ffffe6, 27], [0x3ffffec, 26], [0x3ffffed, 26], [0x7ffffe7, 27], [0x7ffffe8, 27], [0x7ffffe9, 27], [0x7ffffea, 27],
  [0x7ffffeb, 27], [0xffffffe, 28], [0x7ffffec, 27], [0x7ffffed, 27], [0x7ffffee, 27], [0x7ffffef, 27], [0x7fffff0, 27], [0x3ffffee, 26],
  // 256: EOS
  [0x3fffffff, 30],
];

export const EOS = 256;

/** Why a Huffman string was refused (RFC 7541 §5.2); hpack.ts turns it into its own error. */
export class HuffmanError extends Error {}

/*
 * The decoding machine. A state is an internal node of the code tree (0 is
 * the root), plus DEAD, where a complete EOS leads and which never leaves.
 * TRANSITIONS[state << 4 | nibble] packs the state reached after those 4 bits
 * (bits 0-8) and the symbol completed on the way, if any (bits 16-23, with
 * EMIT set). No code is shorter than 5 bits, so a nibble completes at most
 * one symbol. Because DEAD is sticky, the loop needs no per-nibble error
 * check: where a string ended decides whether it was valid.
 */
const STATE_MASK = 0x1ff;
const EMIT = 1 << 24;
const DEAD = 256;
const TRANSITIONS = new Uint32Array((DEAD + 1) * 16);

/** How a string may end in each state: the padding must be a prefix of EOS (all ones) no longer than 7 bits. */
const END_OK = 0;
const END_PADDING_TOO_LONG = 1;
const END_PADDING_NOT_ONES = 2;
const END_EOS = 3;
const ENDINGS = new Uint8Array(DEAD + 1).fill(END_PADDING_NOT_ONES);

buildDecoder();

function buildDecoder(): void {
  // child[node * 2 + bit]: an internal node's number, or LEAF + symbol; -1 while empty.
  const LEAF = 1024;
  const child = new Int32Array(256 * 2).fill(-1);
  let nodes = 1;
  for (let symbol = 0; symbol < HUFFMAN_CODES.length; symbol++) {
    const [code, length] = HUFFMAN_CODES[symbol] as readonly [number, number];
    let node = 0;
    for (let i = length - 1; i >= 0; i--) {
      const slot = node * 2 + (Math.floor(code / 2 ** i) & 1);
      const next = child[slot] as number;
      if (next >= LEAF) throw new Error(`Huffman table: symbol ${symbol}'s code extends symbol ${next - LEAF}'s`);
      if (i === 0) {
        if (next !== -1) throw new Error(`Huffman table: symbol ${symbol}'s code is a prefix of others`);
        child[slot] = LEAF + symbol;
      } else if (next === -1) {
        if (nodes === 256) throw new Error('Huffman table: more than 256 internal nodes');
        child[slot] = nodes;
        node = nodes++;
      } else {
        node = next;
      }
    }
  }
  // 257 leaves on 256 full internal nodes: the code is complete, so every bit sequence means something.
  if (nodes !== 256 || child.includes(-1)) throw new Error('Huffman table: the code is not complete');

  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let emitted = 0;
      for (let bit = 3; bit >= 0 && node !== DEAD; bit--) {
        const next = child[node * 2 + ((nibble >> bit) & 1)] as number;
        if (next < LEAF) {
          node = next;
        } else if (next - LEAF === EOS) {
          node = DEAD;
          emitted = 0;
        } else {
          if (emitted) throw new Error('Huffman table: two symbols in one nibble');
          emitted = EMIT | ((next - LEAF) << 16);
          node = 0;
        }
      }
      TRANSITIONS[(state << 4) | nibble] = emitted | node;
    }
  }
  for (let nibble = 0; nibble < 16; nibble++) TRANSITIONS[(DEAD << 4) | nibble] = DEAD;

  ENDINGS[0] = END_OK;
  ENDINGS[DEAD] = END_EOS;
  let node = 0;
  for (let depth = 1; depth < 30; depth++) {
    node = child[node * 2 + 1] as number;
    ENDINGS[node] = depth <= 7 ? END_OK : END_PADDING_TOO_LONG;
  }
}

/** Output scratch, grown on demand and kept: header strings are decoded one at a time. */
let scratch = Buffer.allocUnsafe(1024) as Latin1Buffer;

/**
 * Node's Buffer has latin1Slice, which toString('latin1', …) calls after
 * normalising its arguments; calling it directly saves a tenth of a small
 * header block's decode. @types/node leaves it out.
 */
export type Latin1Buffer = Buffer & { latin1Slice(start: number, end: number): string };

/** Decodes src[start, end) as latin1 (every octet maps to one char). Throws HuffmanError. */
export function huffmanDecode(src: Uint8Array, start: number, end: number): string {
  // At least 5 bits per symbol.
  const most = Math.ceil(((end - start) * 8) / 5);
  if (most > scratch.length) scratch = Buffer.allocUnsafe(Math.max(most, scratch.length * 2)) as Latin1Buffer;
  const out = scratch;
  let n = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i] as number;
    let entry = TRANSITIONS[(state << 4) | (byte >> 4)] as number;
    if (entry & EMIT) out[n++] = (entry >> 16) & 0xff;
    entry = TRANSITIONS[((entry & STATE_MASK) << 4) | (byte & 0xf)] as number;
    if (entry & EMIT) out[n++] = (entry >> 16) & 0xff;
    state = entry & STATE_MASK;
  }
  switch (ENDINGS[state]) {
    case END_EOS:
      throw new HuffmanError('Huffman string contains EOS');
    case END_PADDING_TOO_LONG:
      throw new HuffmanError('Huffman padding longer than 7 bits');
    case END_PADDING_NOT_ONES:
      throw new HuffmanError('Huffman padding is not a prefix of EOS');
  }
  return out.latin1Slice(0, n);
}

/** The Huffman encoding of a latin1 string (chars above U+00FF keep their low byte), padded with ones. */
export function huffmanEncode(text: string): Buffer {
  let bits = 0;
  for (let i = 0; i < text.length; i++) bits += (HUFFMAN_CODES[text.charCodeAt(i) & 0xff] as readonly [number, number])[1];
  const out = Buffer.allocUnsafe(Math.ceil(bits / 8));
  // acc holds fewer than 8 pending bits before each code is added, so at most 37: exact in a double, not in int32.
  let acc = 0;
  let pending = 0;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const [code, length] = HUFFMAN_CODES[text.charCodeAt(i) & 0xff] as readonly [number, number];
    acc = acc * 2 ** length + code;
    pending += length;
    while (pending >= 8) {
      pending -= 8;
      const byte = Math.floor(acc / 2 ** pending);
      out[n++] = byte;
      acc -= byte * 2 ** pending;
    }
  }
  if (pending > 0) out[n] = (acc << (8 - pending)) | (0xff >> pending);
  return out;
}
