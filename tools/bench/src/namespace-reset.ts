import { BerthClient } from '@berth/client';
import { contentFiles, type Engine } from './engines.js';
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
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await contentFiles(engine);
    if (left.length === 0) break;
    if (Date.now() > deadline) throw new Error(`${engine.name}'s content store still holds ${left.join(', ')} after emptying ${namespace}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await runTimed('sync', [], { timeoutMs: 120_000 });
}
