import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeFrame, type Frame, FrameDecoder, MESSAGE_LENGTH_MAX, MessageType } from './frame-decoder.js';

function header(length: number, streamId: number, type: number): Buffer {
  const h = Buffer.alloc(10);
  h.writeUInt32BE(length, 0);
  h.writeUInt32BE(streamId, 4);
  h[8] = type;
  return h;
}

const summary = (frames: Frame[]) =>
  frames.map((f) => (f.kind === 'message' ? [f.streamId, f.type, f.payload.toString()] : ['oversize', f.streamId, f.length]));

describe('ttrpc framing', () => {
  test('a frame is a 10-byte big-endian header and the message', () => {
    const frame = encodeFrame(0x01020304, MessageType.RESPONSE, Buffer.from('hi'));
    assert.deepEqual([...frame], [0, 0, 0, 2, 1, 2, 3, 4, 2, 0, 0x68, 0x69]);
  });

  test('a frame split into single bytes comes out whole, once', () => {
    const decoder = new FrameDecoder();
    const bytes = encodeFrame(7, MessageType.REQUEST, Buffer.from('split across chunks'));
    const frames: Frame[] = [];
    for (let i = 0; i < bytes.length; i++) frames.push(...decoder.push(bytes.subarray(i, i + 1)));
    assert.deepEqual(summary(frames), [[7, 1, 'split across chunks']]);
  });

  test('several frames in one chunk, the last one cut and finished by the next chunk', () => {
    const decoder = new FrameDecoder();
    const all = Buffer.concat([
      encodeFrame(1, 1, Buffer.from('one')),
      encodeFrame(3, 1, Buffer.alloc(0)),
      encodeFrame(5, 2, Buffer.from('three')),
      encodeFrame(7, 1, Buffer.from('four')),
    ]);
    const cut = all.length - 6;
    assert.deepEqual(summary(decoder.push(all.subarray(0, cut))), [
      [1, 1, 'one'],
      [3, 1, ''],
      [5, 2, 'three'],
    ]);
    assert.deepEqual(summary(decoder.push(all.subarray(cut))), [[7, 1, 'four']]);
  });

  test('every split point of a three-frame stream decodes the same', () => {
    const all = Buffer.concat([encodeFrame(1, 1, Buffer.from('a')), encodeFrame(3, 1, Buffer.from('bcdefghijk')), encodeFrame(5, 1, Buffer.from('l'))]);
    for (let i = 0; i <= all.length; i++) {
      for (const j of [i, Math.min(all.length, i + 3), all.length]) {
        const decoder = new FrameDecoder();
        const frames = [...decoder.push(all.subarray(0, i)), ...decoder.push(all.subarray(i, j)), ...decoder.push(all.subarray(j))];
        assert.deepEqual(summary(frames), [[1, 1, 'a'], [3, 1, 'bcdefghijk'], [5, 1, 'l']], `split at ${i}/${j}`);
      }
    }
  });

  test('a 4 MiB message passes; one byte more is skipped, reported, and the stream goes on', () => {
    const decoder = new FrameDecoder();
    const max = encodeFrame(1, 1, Buffer.alloc(MESSAGE_LENGTH_MAX, 1));
    const frames = decoder.push(max);
    assert.equal(frames.length, 1);
    assert.equal(frames[0].kind === 'message' && frames[0].payload.length, MESSAGE_LENGTH_MAX);

    const over = MESSAGE_LENGTH_MAX + 1;
    assert.deepEqual(decoder.push(header(over, 3, 1)), []);
    // The body streams past in pieces; nothing is reported until all of it is gone.
    assert.deepEqual(decoder.push(Buffer.alloc(over - 10)), []);
    const rest = Buffer.concat([Buffer.alloc(10), encodeFrame(5, 1, Buffer.from('after'))]);
    assert.deepEqual(summary(decoder.push(rest)), [
      ['oversize', 3, over],
      [5, 1, 'after'],
    ]);
  });
});
