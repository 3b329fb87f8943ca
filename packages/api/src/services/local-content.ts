import { type ContentService, type DescriptorInbox, InvalidArgumentError, type RequestContext } from '@berth/plugin-api';
import { closeSync } from 'node:fs';

type Req = Record<string, any>;

/**
 * berth.services.content.v1.LocalContent → ContentService.ingestFile, with
 * the descriptor the client passed over berthd's descriptor socket.
 */
export function localContentHandlers(svc: ContentService, inbox: DescriptorInbox) {
  return {
    ingestFile: async (req: Req, ctx: RequestContext) => {
      if (!req.ref) throw new InvalidArgumentError('ref must not be empty');
      const size = Number(req.size ?? 0);
      if (!Number.isSafeInteger(size) || size < 0) throw new InvalidArgumentError(`size must be a non-negative integer, got ${req.size}`);
      const fd = await inbox.take(String(req.token ?? ''), ctx.signal);
      try {
        const info = await svc.ingestFile(ctx, fd, {
          ref: req.ref,
          size,
          expected: req.expected || undefined,
          labels: req.labels ?? {},
        });
        return { digest: info.digest, size: info.size };
      } finally {
        closeSync(fd);
      }
    },
  };
}
