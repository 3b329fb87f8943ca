import { readdirSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/** berth's .proto files: the repository's proto/ folder. */
export const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));

function protoFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.proto'))
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

/**
 * Load berth's proto files (and any extra files a plugin brings) into one
 * protobufjs root. Imports resolve against proto/; google/protobuf/* comes
 * from protobufjs's bundled well-known types.
 */
export function loadProtoRoot(extraFiles: readonly string[] = []): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (target.startsWith('google/protobuf/')) return target;
    if (isAbsolute(target)) return target;
    return join(PROTO_DIR, target);
  };
  root.loadSync([...protoFiles(PROTO_DIR), ...extraFiles], { keepCase: false });
  root.resolveAll();
  return root;
}

let shared: protobuf.Root | undefined;

/** The root with berth's own protos, loaded once per process. */
export function protoRoot(): protobuf.Root {
  shared ??= loadProtoRoot();
  return shared;
}

export function lookupService(root: protobuf.Root, name: string): protobuf.Service {
  const service = root.lookup(name);
  if (!service || !(service instanceof Object) || !('methods' in service)) {
    throw new Error(`service ${name} is not defined in berth's proto files`);
  }
  return service as protobuf.Service;
}
