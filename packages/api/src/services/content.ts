import {
  AlreadyExistsError,
  type ContentIngest,
  type ContentInfo,
  type ContentService,
  InvalidArgumentError,
  type IngestStatus,
  OutOfRangeError,
  type RequestContext,
} from '@berth/plugin-api';
import { toTimestamp } from '../codec.js';

type Req = Record<string, any>;

const WriteAction = { STAT: 0, WRITE: 1, COMMIT: 2 } as const;

const infoToWire = (i: ContentInfo) => ({
  digest: i.digest,
  size: i.size,
  createdAt: toTimestamp(i.createdAt),
  updatedAt: toTimestamp(i.updatedAt),
  labels: { ...i.labels },
});

const statusToWire = (s: IngestStatus) => ({
  startedAt: toTimestamp(s.startedAt),
  updatedAt: toTimestamp(s.updatedAt),
  ref: s.ref,
  offset: s.offset,
  total: s.total,
  expected: s.expected,
});

/** containerd.services.content.v1.Content → ContentService. */
export function contentHandlers(svc: ContentService) {
  return {
    info: async (req: Req, ctx: RequestContext) => ({ info: infoToWire(await svc.info(ctx, req.digest)) }),
    update: async (req: Req, ctx: RequestContext) => ({
      info: infoToWire(
        await svc.update(ctx, { digest: req.info?.digest ?? '', labels: req.info?.labels ?? {} }, req.updateMask?.paths ?? []),
      ),
    }),
    list: async function* (req: Req, ctx: RequestContext) {
      const infos = await svc.list(ctx, req.filters ?? []);
      // containerd sends pages of up to 100 entries.
      for (let i = 0; i < infos.length; i += 100) yield { info: infos.slice(i, i + 100).map(infoToWire) };
    },
    delete: async (req: Req, ctx: RequestContext) => {
      await svc.delete(ctx, req.digest);
      return {};
    },
    read: async function* (req: Req, ctx: RequestContext) {
      let offset = Number(req.offset ?? 0);
      for await (const chunk of await svc.read(ctx, req.digest, offset, Number(req.size ?? 0))) {
        yield { offset, data: chunk };
        offset += chunk.byteLength;
      }
    },
    status: async (req: Req, ctx: RequestContext) => ({ status: statusToWire(await svc.status(ctx, req.ref)) }),
    listStatuses: async (req: Req, ctx: RequestContext) => ({
      statuses: (await svc.listStatuses(ctx, req.filters ?? [])).map(statusToWire),
    }),
    abort: async (req: Req, ctx: RequestContext) => {
      await svc.abort(ctx, req.ref);
      return {};
    },
    write: (reqs: AsyncIterable<Req>, ctx: RequestContext, send: (res: object) => Promise<void>) => write(svc, reqs, ctx, send),
  };
}

/**
 * The lock-step Write stream: the first message names the ref; STAT answers
 * the ingest's state (so a client resumes from its offset), WRITE appends at
 * the given offset, COMMIT verifies and publishes. Every request gets a reply.
 */
async function write(svc: ContentService, reqs: AsyncIterable<Req>, ctx: RequestContext, send: (res: object) => Promise<void>) {
  let ingest: ContentIngest | undefined;
  let startedAt = new Date();
  let total = 0;
  let expected = '';
  try {
    for await (const req of reqs) {
      if (!ingest) {
        if (!req.ref) throw new InvalidArgumentError('first message must have a reference');
        expected = req.expected ?? '';
        ingest = await svc.writer(ctx, { ref: req.ref, total: Number(req.total ?? 0), expected });
        const status = await ingest.status();
        startedAt = status.startedAt;
        total = status.total;
      }
      const action = req.action ?? WriteAction.STAT;
      if (action !== WriteAction.STAT && action !== WriteAction.WRITE && action !== WriteAction.COMMIT) {
        throw new InvalidArgumentError(`unknown write action ${action}`);
      }
      if (action !== WriteAction.STAT) {
        if (Number(req.total) > 0) total = Number(req.total);
        if (req.expected && req.expected !== expected) {
          // As containerd: naming a digest the namespace already has ends the write.
          expected = req.expected;
          const have = await svc.info(ctx, expected).then(
            () => true,
            () => false,
          );
          if (have) throw new AlreadyExistsError(`blob with expected digest ${expected} exists`);
        }
        const offset = Number(req.offset ?? 0);
        const data: Uint8Array = req.data ?? new Uint8Array();
        if (data.byteLength > 0 || offset !== ingest.offset) {
          if (offset === 0 && ingest.offset > 0) await ingest.truncate(0);
          else if (offset !== ingest.offset) {
            throw new OutOfRangeError(`write @${offset} must occur at current offset ${ingest.offset}`);
          }
          await ingest.write(data);
        }
      }
      const digest = action === WriteAction.COMMIT ? await ingest.commit(total, req.expected ?? '', req.labels ?? {}) : ingest.digest();
      await send({
        action,
        startedAt: toTimestamp(startedAt),
        updatedAt: toTimestamp(new Date()),
        offset: ingest.offset,
        total,
        digest,
      });
      if (action === WriteAction.COMMIT) return;
    }
  } finally {
    await ingest?.close();
  }
}
