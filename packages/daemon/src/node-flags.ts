/**
 * The V8 settings berthd runs with, wherever it is started from: the `berthd`
 * bin's shebang, `npm start`, the e2e harness and the bench (main.test.ts
 * checks the shebang says the same).
 *
 * A young generation of 2 MiB semi-spaces instead of V8's 16 MiB: berthd's
 * allocations are short-lived request objects and buffers, and the default
 * new space, once grown under a burst of requests, keeps 32 MiB resident for
 * good. Measured with `npm run bench` (lifecycle rows, 2 rounds, same
 * machine): berthd plus its shim with 20 containers running 177 MiB with the
 * default, 159 MiB with 4 MiB, 147 MiB with 2 MiB; berthd's CPU per 30
 * creates and per pull the same within the noise.
 */
export const BERTHD_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];
