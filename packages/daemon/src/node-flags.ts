/**
 * The V8 settings berthd runs with, wherever it is started from: the `berthd`
 * bin's shebang, `npm start`, the e2e harness and the bench (node-flags.test.ts
 * checks the shebang says the same).
 *
 * A young generation of 2 MiB semi-spaces instead of V8's 16 MiB: berthd's
 * allocations are short-lived request objects and buffers, and the default
 * new space, once grown under a burst of requests, keeps 32 MiB resident for
 * good. It is a trade: memory for garbage-collection work on the streaming
 * paths. `npm run bench -- --only pull-137m-nounpack,containers-create-30
 * --rounds 3` on one machine, berth/containerd:
 *
 *   semi-space   pull-137m-nounpack   rss-20-running
 *   16 MiB       1.25x                0.59x (181 MiB)
 *    4 MiB       1.28x                0.50x (154 MiB)
 *    2 MiB       1.33x                0.49x (151 MiB)
 *
 * The memory goal (0.5x) is met only with the small young generation; the
 * pull, slower than containerd's either way, loses about 8 %.
 *
 * 1 MiB since berthd parses HTTP/2 itself (h2/session.ts): it makes few
 * objects per DATA frame, so young collections came rarely, while each
 * 64 KiB socket read is a buffer whose memory only a young collection frees.
 * V8 forces one only once 32 MiB of such buffers wait, and before that the
 * old generation's limit (three times the 12 MiB that survived, buffers
 * counted) started full collections: `ctr content ingest` of 256 MiB ran 20
 * of them with 2 MiB semi-spaces and 2 with 1 MiB (`--trace-gc`; berthd CPU
 * 1060-1100 -> 720-770 ms, node:http2's server took 710-780). Two full
 * 5-round benches, before and after this and the message decoder's change
 * (grpc-framing.ts) of the same commit: content-ingest-256m 0.55x -> 0.45x,
 * import-137m-nounpack 0.77x -> 0.58x, pull-137m-nounpack 1.00x -> 0.86x,
 * rss-20-running 0.47x -> 0.46x; berthd's peak 125 MiB.
 *
 * An old generation that may grow to three times what survived the last full
 * collection before the next one starts (V8's factor is 1.1-4 by heuristics).
 * A 137 MB import with unpack ran some 30 full (incremental) collections of
 * a live heap of 15 MiB, each started at the old generation's allocation
 * limit (`--trace-incremental-marking`): the buffers of a pull or an import
 * (1 MiB messages, read and gunzip chunks) that outlive two young
 * collections in queues are promoted, and their backing stores count
 * towards that limit, which V8 sets from the small live heap. `--trace-gc` on one such import: 30 -> 5 of them, berthd CPU
 * 1610 -> 1050 ms. `npm run bench -- --only import-137m-unpack,pull-137m-unpack,
 * containers-create-30 --rounds 3`, berth/containerd (berthd CPU):
 *
 *   growing percent   import-137m-unpack   pull-137m-unpack    rss-20-running
 *   V8's own          1.09x (1730 ms)      1.20x (1670 ms)     0.46x (141 MiB)
 *   100               0.93x (1230 ms)      1.07x (1440 ms)     0.45x (138 MiB)
 *   200 (chosen)      0.91x (1260 ms)      0.80x  (880 ms)     0.46x (142 MiB)
 *   300               0.80x  (880 ms)      0.72x  (720 ms)     0.51x (155 MiB)
 *
 * The resident set with 20 containers running stays where it was at 200; at
 * 300 it crossed the memory goal. The idle trim (a full GC) still returns
 * what a burst leaves.
 */
export const BERTHD_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--heap-growing-percent=200'];
