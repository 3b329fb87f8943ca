import {
  type ContentIngest,
  type ContentInfo,
  type ContentService,
  InvalidArgumentError,
  type IngestStatus,
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
  let status: IngestStatus | undefined;
  try {
    for await (const req of reqs) {
      if (!ingest) {
        if (!req.ref) throw new InvalidArgumentError('first message must have a reference');
        ingest = await svc.writer(ctx, { ref: req.ref, total: Number(req.total ?? 0), expected: req.expected ?? '' });
        status = await ingest.status();
      }
      const action = req.action ?? WriteAction.STAT;
      let digest = '';
      let total = status?.total ?? 0;
      if (action === WriteAction.WRITE || action === WriteAction.COMMIT) {
        const offset = Number(req.offset ?? 0);
        if (req.total > 0) total = Number(req.total);
        const data: Uint8Array = req.data ?? new Uint8Array();
        if (data.byteLength > 0 || offset !== ingest.offset) {
          if (offset === 0 && ingest.offset > 0) await ingest.truncate(0);
          else if (offset !== ingest.offset) {
            throw new InvalidArgumentError(`write at offset ${offset}, but the ingest is at ${ingest.offset}`);
          }
          await ingest.write(data);
        }
        if (action === WriteAction.COMMIT) {
          digest = await ingest.commit(total, req.expected ?? '', req.labels ?? {});
        }
      } else if (action === WriteAction.STAT) {
        status = await ingest.status();
        total = status.total;
        digest = ingest.digest();
      } else {
        throw new InvalidArgumentError(`unknown write action ${action}`);
      }
      await send({
        action,
        startedAt: toTimestamp(status?.startedAt ?? new Date()),
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
