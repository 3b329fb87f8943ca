import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/** An incremental sha256 whose work may happen on another thread. */
export interface Sha256 {
  update(chunk: Uint8Array): void;
  /** `sha256:<hex>`. */
  digest(): Promise<string>;
  /** Forget it (after a failure). */
  dispose(): void;
}

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  let h = hashes.get(m.id);
  if (m.op === 'update') {
    if (!h) hashes.set(m.id, (h = createHash('sha256')));
    h.update(new Uint8Array(m.data));
  } else if (m.op === 'digest') {
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, digest: (h ?? createHash('sha256')).digest('hex') });
  } else if (m.op === 'drop') {
    hashes.delete(m.id);
  }
});
`;

/**
 * Hashes layer bytes on a worker thread so that sha256 (about a fifth of
 * an uncompressed apply's CPU time) runs beside the extraction instead of
 * in front of it. Chunks are copied once and their copies transferred. One
 * unref'd worker serves every hash in the process; if it cannot start,
 * hashing happens inline.
 */
export class HashWorker {
  private static sharedWorker: HashWorker | undefined;

  /** The process-wide hash worker (started on first use; stopped by close, restarted when needed again). */
  static shared(): HashWorker {
    HashWorker.sharedWorker ??= new HashWorker();
    return HashWorker.sharedWorker;
  }

  private worker: Worker | undefined;
  private failed = false;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (hex: string) => void; reject: (err: Error) => void }>();

  start(): Sha256 {
    const worker = this.ensureWorker();
    if (!worker) return inlineSha256();
    const id = this.nextId++;
    let done = false;
    return {
      update: (chunk) => {
        // A copy of exactly these bytes, whose buffer can be handed over (Buffer#slice would not copy).
        const copy = new Uint8Array(chunk.length);
        copy.set(chunk);
        worker.postMessage({ op: 'update', id, data: copy.buffer }, [copy.buffer]);
      },
      digest: () => {
        done = true;
        return new Promise<string>((resolve, reject) => {
          if (this.worker !== worker) {
            reject(new Error('the hash worker stopped'));
            return;
          }
          this.waiting.set(id, { resolve: (hex) => resolve(`sha256:${hex}`), reject });
          worker.ref(); // keep the process up until the answer comes
          worker.postMessage({ op: 'digest', id });
        });
      },
      dispose: () => {
        if (!done) worker.postMessage({ op: 'drop', id });
        done = true;
      },
    };
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    for (const { reject } of this.waiting.values()) reject(new Error('the differ closed'));
    this.waiting.clear();
    if (w) await w.terminate();
  }

  private ensureWorker(): Worker | undefined {
    if (this.worker || this.failed) return this.worker;
    try {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.on('message', (m: { id: number; digest: string }) => {
        const waiter = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        if (this.waiting.size === 0) w.unref();
        waiter?.resolve(m.digest);
      });
      const fail = (err: Error) => {
        this.failed = true;
        this.worker = undefined;
        for (const { reject } of this.waiting.values()) reject(err);
        this.waiting.clear();
      };
      w.on('error', fail);
      w.on('exit', (code) => {
        if (this.worker === w) fail(new Error(`hash worker exited with code ${code}`));
      });
      // After the listeners: a 'message' listener refs the worker's port again.
      w.unref();
      this.worker = w;
    } catch {
      this.failed = true;
    }
    return this.worker;
  }
}

export function inlineSha256(): Sha256 {
  const h = createHash('sha256');
  return {
    update: (chunk) => {
      h.update(chunk);
    },
    digest: async () => `sha256:${h.digest('hex')}`,
    dispose: () => {},
  };
}
