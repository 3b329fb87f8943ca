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
 */
export const BERTHD_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];
