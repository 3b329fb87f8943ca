import { createCipheriv, createHash } from 'node:crypto';

const CHUNK = 1 << 20;
const ZEROS = Buffer.alloc(CHUNK);

/**
 * `size` pseudo-random bytes that depend only on `seed`: AES-128-CTR over zeros, keyed by
 * sha256(seed). Fast (AES-NI), incompressible, and the same on every machine.
 */
export async function* deterministicRandom(seed: string, size: number): AsyncGenerator<Buffer> {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`bad size: ${size}`);
  const key = createHash('sha256').update(`berth-image-builder/random\0${seed}`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  for (let left = size; left > 0; left -= CHUNK) {
    yield cipher.update(ZEROS.subarray(0, Math.min(CHUNK, left)));
  }
}
