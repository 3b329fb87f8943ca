import { BerthClient } from '@berth/client';
import { contentFiles, type Engine } from './engines.js';
import { endShims } from './shims.js';
import { checked, runTimed } from './timed-command.js';

async function listQuiet(engine: Engine, namespace: string, args: readonly string[]): Promise<string[]> {
  const r = await engine.ctr(namespace, args, { timeoutMs: 60_000 });
  return r.code === 0 ? r.stdout.split('\n').map((l) => l.trim()).filter(Boolean) : [];
}

async function must(engine: Engine, namespace: string, args: readonly string[]): Promise<void> {
  checked(await engine.ctr(namespace, args, { timeoutMs: 120_000 }), `ctr -n ${namespace} ${args.join(' ')} on ${engine.name}`);
}

/**
 * Empties a namespace through ctr (images, leases, content; ingests left by a failed sample are
 * aborted through @berth/client, ctr having no command for it), removes it, waits until the
 * engine's garbage collector has removed every blob and ingest from its content store, and
 * flushes dirty pages (sync). Both engines share blobs between namespaces, so a blob left
 * behind would turn the next round's ingest into a no-op; neither step is timed.
 */
export async function resetNamespace(engine: Engine, namespace: string, timeoutMs = 60_000): Promise<void> {
  // Whatever a sample left running or created: tasks (SIGKILL, then forced delete), containers
  // (ctr removes each one's snapshot with it).
  const tasks = await listQuiet(engine, namespace, ['tasks', 'ls', '-q']);
  for (const id of tasks) await engine.ctr(namespace, ['tasks', 'kill', '-s', 'KILL', id], { timeoutMs: 30_000 });
  for (const id of tasks) await must(engine, namespace, ['tasks', 'rm', '-f', id]);
  const containers = await listQuiet(engine, namespace, ['containers', 'ls', '-q']);
  if (containers.length) await must(engine, namespace, ['containers', 'rm', ...containers]);
  const images = await listQuiet(engine, namespace, ['images', 'ls', '-q']);
  if (images.length) await must(engine, namespace, ['images', 'rm', '--sync', ...images]);
  const leases = await listQuiet(engine, namespace, ['leases', 'ls', '-q']);
  if (leases.length) await must(engine, namespace, ['leases', 'rm', ...leases]);
  const client = new BerthClient({ address: engine.address, namespace, timeout: 30_000 });
  try {
    for (const s of await client.content.listStatuses()) await client.content.abort(s.ref);
  } finally {
    client.close();
  }
  const blobs = await listQuiet(engine, namespace, ['content', 'ls', '-q']);
  if (blobs.length) await must(engine, namespace, ['content', 'rm', ...blobs]);
  const names = await listQuiet(engine, 'default', ['namespaces', 'ls', '-q']);
  if (names.includes(namespace)) await must(engine, 'default', ['namespaces', 'rm', namespace]);
  // A stock shim exits once its last container is deleted; one that does not is ended by PID and
  // fails the round. berth's group shim lingers idle on purpose (runtime-v2 shim_idle_ms) for the next
  // container: ended here too, so no round inherits it, but that is no failure.
  const lingers = engine.name === 'berth';
  const killed = await endShims(engine.address, namespace, lingers ? 0 : 3_000);
  if (killed.length && !lingers) {
    throw new Error(`${engine.name}: shim(s) ${killed.join(', ')} of ${namespace} still ran after its containers were deleted: killed`);
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await contentFiles(engine);
    if (left.length === 0) break;
    if (Date.now() > deadline) throw new Error(`${engine.name}'s content store still holds ${left.join(', ')} after emptying ${namespace}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await runTimed('sync', [], { timeoutMs: 120_000 });
}
