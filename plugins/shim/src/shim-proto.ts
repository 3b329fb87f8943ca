import { PROTO_DIR } from '@berth/api/protocol';
import { isAbsolute, join } from 'node:path';
import protobuf from 'protobufjs';

/** Only the .proto files a shim speaks: a fraction of berth's whole API, loaded once per shim. */
const SHIM_PROTO_FILES = [
  'containerd/runtime/task/v2/shim.proto',
  'containerd/events/task.proto',
  'containerd/services/ttrpc/events/v1/events.proto',
  'containerd/cgroups/v1/metrics.proto',
  'containerd/cgroups/v2/metrics.proto',
  'containerd/runc/options/oci.proto',
];

/**
 * berth's own ttrpc service beside containerd's Task service on a shim's
 * socket, for berthd: which group the shim serves, and a reservation so the
 * shim does not exit between the question and the Create that follows.
 *
 *   service berth.shim.v1.Shim { rpc Info(InfoRequest) returns (InfoResponse); }
 *   message InfoRequest { string reserve_id = 1; }
 *   message InfoResponse {
 *     uint32 shim_pid = 1; string namespace = 2; string group = 3; string address = 4;
 *     repeated string containers = 5; string version = 6; string socket = 7;
 *   }
 */
const SHIM_INFO_PROTO = {
  berth: {
    nested: {
      shim: {
        nested: {
          v1: {
            nested: {
              InfoRequest: { fields: { reserveId: { type: 'string', id: 1 } } },
              InfoResponse: {
                fields: {
                  shimPid: { type: 'uint32', id: 1 },
                  namespace: { type: 'string', id: 2 },
                  group: { type: 'string', id: 3 },
                  address: { type: 'string', id: 4 },
                  containers: { rule: 'repeated', type: 'string', id: 5 },
                  version: { type: 'string', id: 6 },
                  socket: { type: 'string', id: 7 },
                },
              },
              Shim: { methods: { Info: { requestType: 'InfoRequest', responseType: 'InfoResponse' } } },
            },
          },
        },
      },
    },
  },
};

export const SHIM_INFO_SERVICE = 'berth.shim.v1.Shim';

let root: protobuf.Root | undefined;

export function shimProtoRoot(): protobuf.Root {
  if (!root) {
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => {
      if (target.startsWith('google/protobuf/') || isAbsolute(target)) return target;
      return join(PROTO_DIR, target);
    };
    r.loadSync(SHIM_PROTO_FILES, { keepCase: false });
    r.addJSON(SHIM_INFO_PROTO);
    r.resolveAll();
    root = r;
  }
  return root;
}

export const TASK_SERVICE = 'containerd.task.v2.Task';
export const EVENTS_SERVICE = 'containerd.services.events.ttrpc.v1.Events';

/** An Any as protobufjs takes and gives it here (note `type_url`: the bundled google/protobuf/any.proto keeps its case). */
export interface AnyMessage {
  readonly type_url: string;
  readonly value: Uint8Array;
}

/** A message packed in an Any with containerd's bare type URL (`containerd.events.TaskExit`, not `type.googleapis.com/…`). */
export function packAny(typeName: string, value: object): AnyMessage {
  const type = shimProtoRoot().lookupType(typeName);
  const bytes = type.encode(type.fromObject(value as Record<string, unknown>)).finish();
  return { type_url: typeName, value: bytes };
}
