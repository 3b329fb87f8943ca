import { isAlive } from '@berth/image-builder';
import { readdirSync, readFileSync } from 'node:fs';
import { readMemory } from './process-stats.js';

/** A shim process of an engine: its PID and the namespace it serves. */
export interface ShimProcess {
  readonly pid: number;
  readonly namespace: string | undefined;
  readonly argv: readonly string[];
}

function argvOf(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined; // Gone meanwhile.
  }
}

/**
 * The shim processes serving the engine at `address`: containerd passes its gRPC socket to every
 * shim as `-address` (containerd-shim-runc-v2 under containerd, containerd-shim-berth-v1's
 * `serve` process under berthd, whose argv also carries it), and the engines' sockets are private
 * to the bench, so no other process matches. `namespace` narrows to one namespace (`-namespace`).
 */
export function shimsOf(address: string, namespace?: string): ShimProcess[] {
  const out: ShimProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = argvOf(Number(entry));
    if (!argv) continue;
    const a = argv.indexOf('-address');
    if (a === -1 || argv[a + 1] !== address) continue;
    const n = argv.indexOf('-namespace');
    const ns = n === -1 ? undefined : argv[n + 1];
    if (namespace !== undefined && ns !== namespace) continue;
    out.push({ pid: Number(entry), namespace: ns, argv });
  }
  return out;
}

/** VmRSS of the engine plus all its shims, KiB, and how many shims there were. */
export function engineAndShimsRssKiB(enginePid: number, address: string): { rssKiB: number; shims: number; shimRssKiB: number } {
  let shimRssKiB = 0;
  let shims = 0;
  for (const s of shimsOf(address)) {
    try {
      shimRssKiB += readMemory(s.pid).rssKiB;
      shims++;
    } catch {
      // Exited between the scan and the read.
    }
  }
  return { rssKiB: readMemory(enginePid).rssKiB + shimRssKiB, shims, shimRssKiB };
}

/**
 * Ends the engine's shims (of one namespace, or all): waits `graceMs` for them to exit on their
 * own, then sends SIGTERM to each by PID and waits up to `termGraceMs` (a berth group shim lingers for
 * its next container; on SIGTERM it leaves and removes its socket and lock file, where SIGKILL
 * would leave both in /run/berth/s), then SIGKILLs what is left. Answers the PIDs it had to end.
 */
export async function endShims(address: string, namespace?: string, graceMs = 3_000, termGraceMs = 2_000): Promise<number[]> {
  const waitGone = async (shims: ShimProcess[], ms: number): Promise<ShimProcess[]> => {
    const deadline = Date.now() + ms;
    let left = shims;
    while (left.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      left = left.filter((s) => isAlive(s.pid));
    }
    return left;
  };
  const stayed = await waitGone(shimsOf(address, namespace), graceMs);
  for (const s of stayed) {
    try {
      process.kill(s.pid, 'SIGTERM');
    } catch {
      // Exited meanwhile.
    }
  }
  for (const s of await waitGone(stayed, termGraceMs)) {
    try {
      process.kill(s.pid, 'SIGKILL');
    } catch {
      // Exited meanwhile.
    }
  }
  return stayed.map((s) => s.pid);
}
