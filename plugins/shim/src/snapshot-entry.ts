/**
 * The entry of the shim's V8 start-up snapshot (scripts/build-snapshot.mjs
 * bundles it with everything it imports and runs it under `node
 * --build-snapshot`). Loading the modules and parsing the shim's .proto files
 * happen here, once, at build time; a `serve` started from the snapshot
 * (start-command.ts) begins with them done and runs only the function below.
 * Nothing here runs in a shim started from main.js.
 */
import { startupSnapshot } from 'node:v8';
import protobuf from 'protobufjs';
import { parseFlags } from './flags.js';
import { serve } from './serve.js';
import { shimProtoRoot } from './shim-proto.js';

// protobufjs generates each message type's encoder, decoder and converters on first use; generated
// here, they are part of the snapshot and a shim's first Create, Start, Wait and Delete skip it.
warmTypes(shimProtoRoot());

function warmTypes(ns: protobuf.NamespaceBase): void {
  for (const nested of ns.nestedArray) {
    if (nested instanceof protobuf.Type) nested.setup();
    if (nested instanceof protobuf.Namespace) warmTypes(nested);
  }
}

startupSnapshot.setDeserializeMainFunction(() => {
  // A process started from a snapshot has no script: argv is [node, ...the shim's flags].
  serve(parseFlags(process.argv.slice(1))).catch((err: Error) => {
    process.stderr.write(`containerd-shim-berth-v1 serve: ${err.message}\n`);
    process.exit(1);
  });
});
