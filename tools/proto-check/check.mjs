#!/usr/bin/env node
// proto-check: verifies that berth's own .proto files (proto/) describe the
// same wire contract as containerd's upstream API definitions.
//
// Every berth file is loaded with protobufjs (keepCase, include path proto/,
// bundled google/protobuf types). When containerd's Go sources are installed
// (Debian: /usr/share/gocode/src, containerd 1.6), the matching upstream file
// is loaded too, with gogoproto/containerd custom options stripped, and the
// two are compared: messages (field names, numbers, types, labels, map-ness),
// enums (values) and services (methods, request/response types, streaming).
//
// Fields, messages and methods that berth carries beyond the installed
// upstream (containerd 1.7 additions, or 1.6 fields newer API modules
// dropped) must be listed in BERTH_EXTRAS below with their exact shape.
//
// Environment:
//   GOCODE_SRC          Go source root to read upstream from (default /usr/share/gocode/src)
//   CONTAINERD_API_DIR  containerd api/ directory (default $GOCODE_SRC/github.com/containerd/containerd/api)
//   BERTH_PROTO_DIR     berth proto root (default <repo>/proto)

import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BERTH_ROOT = path.resolve(process.env.BERTH_PROTO_DIR ?? path.join(HERE, '..', '..', 'proto'));
const GOCODE = path.resolve(process.env.GOCODE_SRC ?? '/usr/share/gocode/src');
const CTRD_MOD = path.join(GOCODE, 'github.com/containerd/containerd');
const CTRD_API = path.resolve(process.env.CONTAINERD_API_DIR ?? path.join(CTRD_MOD, 'api'));

// ---------------------------------------------------------------------------
// Things berth defines that a given upstream tree may lack. Each entry is the
// exact expected shape; it is only consulted when upstream has no such
// element, and must then not collide with anything upstream has.
// ---------------------------------------------------------------------------

const f = (name, id, type, extra = {}) => ({ name, id, type, repeated: false, map: null, optional: false, ...extra });

const BERTH_EXTRAS = {
  fields: {
    '.containerd.types.Platform': [f('os_version', 4, 'string')], // api v1.8 (1.7.25+)
    '.containerd.services.introspection.v1.ServerResponse': [
      f('pid', 2, 'uint64'), // 1.7.0
      f('pidns', 3, 'uint64'), // 1.7.0
      f('deprecations', 4, '.containerd.services.introspection.v1.DeprecationWarning', { repeated: true }), // 1.7.9
    ],
    '.containerd.services.containers.v1.Container': [f('sandbox', 11, 'string')], // 1.7.0
    '.containerd.services.images.v1.CreateImageRequest': [f('source_date_epoch', 2, '.google.protobuf.Timestamp')], // 1.7.0
    '.containerd.services.images.v1.UpdateImageRequest': [f('source_date_epoch', 3, '.google.protobuf.Timestamp')], // 1.7.0
    '.containerd.services.images.v1.DeleteImageRequest': [
      f('target', 3, '.containerd.types.Descriptor', { optional: true }), // api v1.8 (1.7.25+)
    ],
    '.containerd.services.diff.v1.ApplyRequest': [f('sync_fs', 4, 'bool')], // 1.7.14
    '.containerd.services.diff.v1.DiffRequest': [f('source_date_epoch', 6, '.google.protobuf.Timestamp')], // 1.7.0
    '.containerd.events.SnapshotPrepare': [f('snapshotter', 5, 'string')], // 1.7.0
    '.containerd.events.SnapshotCommit': [f('snapshotter', 5, 'string')], // 1.7.0
    '.containerd.events.SnapshotRemove': [f('snapshotter', 5, 'string')], // 1.7.0
    '.containerd.runc.v1.Options': [
      f('criu_path', 8, 'string'), // 1.6 field, reserved by api v1.8
      f('task_api_address', 12, 'string'), // api v1.8
      f('task_api_version', 13, 'uint32'), // api v1.8
    ],
  },
  messages: {
    // 1.7.9
    '.containerd.services.introspection.v1.DeprecationWarning': [
      f('id', 1, 'string'),
      f('message', 2, 'string'),
      f('last_occurrence', 3, '.google.protobuf.Timestamp'),
    ],
    // api v1.8 (1.7.25+)
    '.containerd.services.introspection.v1.PluginInfoRequest': [
      f('type', 1, 'string'),
      f('id', 2, 'string'),
      f('options', 3, '.google.protobuf.Any'),
    ],
    '.containerd.services.introspection.v1.PluginInfoResponse': [
      f('plugin', 1, '.containerd.services.introspection.v1.Plugin'),
      f('extra', 2, '.google.protobuf.Any'),
    ],
  },
  methods: {
    // api v1.8 (1.7.25+)
    '.containerd.services.introspection.v1.Introspection': [
      {
        name: 'PluginInfo',
        requestType: '.containerd.services.introspection.v1.PluginInfoRequest',
        responseType: '.containerd.services.introspection.v1.PluginInfoResponse',
        requestStream: false,
        responseStream: false,
      },
    ],
  },
};

// berth keeps the 1.6 event envelopes; api v1.8 (containerd 1.7.25+) replaced
// both with containerd.types.Envelope (same fields). Used only when upstream
// lacks the berth name.
const TYPE_ALIASES = {
  '.containerd.services.events.v1.Envelope': '.containerd.types.Envelope',
  '.containerd.services.events.ttrpc.v1.Envelope': '.containerd.types.Envelope',
};

// ---------------------------------------------------------------------------
// berth file -> upstream file candidates (first existing wins)
// ---------------------------------------------------------------------------

function upstreamCandidates(rel) {
  const p = rel.split(path.sep).join('/');
  const inGo = (...xs) => xs.map((x) => path.join(GOCODE, x));
  let m = p.match(/^containerd\/((?:types|services|events)\/.+)$/);
  if (m) return [path.join(CTRD_API, m[1])];
  switch (p) {
    case 'containerd/runtime/task/v2/shim.proto':
      return [path.join(CTRD_API, 'runtime/task/v2/shim.proto'), path.join(CTRD_MOD, 'runtime/v2/task/shim.proto')];
    case 'containerd/runc/options/oci.proto':
      return [
        path.join(CTRD_API, 'types/runc/options/oci.proto'),
        path.join(CTRD_MOD, 'runtime/v2/runc/options/oci.proto'),
      ];
    case 'containerd/cgroups/v1/metrics.proto':
      return inGo(
        'github.com/containerd/cgroups/stats/v1/metrics.proto',
        'github.com/containerd/cgroups/v3/cgroup1/stats/metrics.proto',
      );
    case 'containerd/cgroups/v2/metrics.proto':
      return inGo(
        'github.com/containerd/cgroups/v2/stats/metrics.proto',
        'github.com/containerd/cgroups/v3/cgroup2/stats/metrics.proto',
      );
    case 'google/rpc/status.proto':
      return inGo(
        'github.com/gogo/googleapis/google/rpc/status.proto',
        'google.golang.org/genproto/googleapis/rpc/status/status.proto',
        'github.com/googleapis/googleapis/google/rpc/status.proto',
      );
    case 'grpc/health/v1/health.proto':
      return inGo(
        'google.golang.org/grpc/health/grpc_health_v1/health.proto',
        'google.golang.org/grpc/debian/missing-sources/grpc/grpc-proto/master/grpc/health/v1/health.proto',
        'github.com/grpc/grpc-proto/grpc/health/v1/health.proto',
      );
    default:
      m = p.match(/^containerd\/(.+)$/);
      return m ? [path.join(CTRD_API, m[1])] : [];
  }
}

// upstream import path -> file on disk
function resolveUpstreamImport(imp) {
  const candidates = [path.join(GOCODE, imp), path.join(CTRD_API, imp)];
  if (imp === 'google/rpc/status.proto') candidates.push(...upstreamCandidates('google/rpc/status.proto'));
  return candidates.find((c) => fs.existsSync(c)) ?? null;
}

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

function walkProtoFiles(dir) {
  const out = [];
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, ent.name);
    if (ent.isDirectory()) out.push(...walkProtoFiles(full));
    else if (ent.isFile() && ent.name.endsWith('.proto')) out.push(full);
  }
  return out.sort();
}

/** Removes // and block comments, leaving string literals intact. */
function stripComments(src) {
  let out = '';
  for (let i = 0; i < src.length; ) {
    const c = src[i];
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += src[j] === '\\' ? 2 : 1;
      out += src.slice(i, j + 1);
      i = j + 1;
    } else if (c === '/' && src[i + 1] === '/') {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      const chunk = src.slice(i, end < 0 ? src.length : end + 2);
      out += chunk.replace(/[^\n]/g, ' '); // keep line numbers
      i = end < 0 ? src.length : end + 2;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Splits on commas that are not inside quotes. */
function splitTopLevel(s) {
  const parts = [];
  let cur = '';
  let quote = null;
  for (const ch of s) {
    if (quote) {
      if (ch === quote) quote = null;
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === ',') {
      parts.push(cur);
      cur = '';
      continue;
    }
    cur += ch;
  }
  parts.push(cur);
  return parts;
}

// Code-generation-only custom options: gogoproto.* everywhere, and the
// fieldpath options (containerd.plugin.* in 1.6, containerd.types.fieldpath*
// in 1.7). None of them changes the wire format.
const CUSTOM_OPTION = /^\s*\(\s*(?:gogoproto\.|containerd\.plugin\.|containerd\.types\.fieldpath)/;

/** Drops code-generation custom options and the imports that define them. */
function sanitizeUpstream(src) {
  let s = stripComments(src);
  s = s.replace(/^\s*import\s+weak\s+"[^"]*"\s*;/gm, '');
  s = s.replace(/^\s*import\s+"gogoproto\/gogo\.proto"\s*;/gm, '');
  s = s.replace(/^\s*import\s+"[^"]*\/fieldpath\.proto"\s*;/gm, '');
  s = s.replace(/\boption\s*\(\s*(?:gogoproto\.|containerd\.plugin\.|containerd\.types\.fieldpath)[^)]*\)[^;]*;/g, '');
  s = s.replace(/\[([^\]]*)\]/g, (_all, inner) => {
    const kept = splitTopLevel(inner).filter((o) => o.trim() !== '' && !CUSTOM_OPTION.test(o));
    return kept.length ? `[${kept.join(',')}]` : '';
  });
  return s;
}

function bundledCommon(name) {
  const idx = name.lastIndexOf('google/protobuf/');
  const key = idx >= 0 ? name.slice(idx) : name;
  return Object.hasOwn(protobuf.common, key) ? key : null;
}

/** Loads an upstream file (and its imports) into root after sanitizing. */
function loadUpstream(root, file, seen, problems) {
  if (seen.has(file)) return;
  seen.add(file);
  const text = sanitizeUpstream(fs.readFileSync(file, 'utf8'));
  protobuf.parse.filename = file;
  const parsed = protobuf.parse(text, root, { keepCase: true });
  for (const imp of parsed.imports ?? []) {
    const common = bundledCommon(imp);
    if (common) {
      if (!seen.has(common)) {
        seen.add(common);
        root.addJSON(protobuf.common[common].nested);
      }
      continue;
    }
    const resolved = resolveUpstreamImport(imp);
    if (!resolved) {
      problems.push(`${file}: cannot resolve upstream import "${imp}"`);
      continue;
    }
    loadUpstream(root, resolved, seen, problems);
  }
}

function collect(ns, byFile, out = { types: [], enums: [], services: [] }) {
  for (const obj of ns.nestedArray) {
    if (obj instanceof protobuf.Type) {
      if (byFile(obj)) out.types.push(obj);
      collect(obj, byFile, out);
    } else if (obj instanceof protobuf.Enum) {
      if (byFile(obj)) out.enums.push(obj);
    } else if (obj instanceof protobuf.Service) {
      if (byFile(obj)) out.services.push(obj);
    } else if (obj instanceof protobuf.Namespace) {
      collect(obj, byFile, out);
    }
  }
  return out;
}

function typeName(field) {
  if (field.resolvedType) return field.resolvedType.fullName;
  return field.type;
}

function fieldShape(field) {
  const isMap = field instanceof protobuf.MapField;
  return {
    name: field.name,
    id: field.id,
    type: typeName(field),
    repeated: !!field.repeated,
    map: isMap ? field.keyType : null,
    optional: !!field.options?.proto3_optional,
    packed: field.packed,
    oneof: field.partOf && !field.options?.proto3_optional ? field.partOf.name : null,
  };
}

function describe(s) {
  const label = s.map ? `map<${s.map}, ${s.type}>` : `${s.repeated ? 'repeated ' : ''}${s.optional ? 'optional ' : ''}${s.type}`;
  return `${label} ${s.name} = ${s.id}`;
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

function lintBerthFile(file, rel, problems) {
  const text = fs.readFileSync(file, 'utf8');
  const firstLine = text.split('\n', 1)[0];
  if (!firstLine.startsWith('//')) problems.push(`${rel}: first line must be a one-line comment naming the service`);
  if (!/^\s*syntax\s*=\s*"proto3"\s*;/m.test(text)) problems.push(`${rel}: missing syntax = "proto3"`);
  if (/gogoproto/.test(stripComments(text))) problems.push(`${rel}: contains gogoproto references`);
  if (/\boption\s+go_package\b/.test(text)) problems.push(`${rel}: contains option go_package`);
}

function main() {
  if (!fs.existsSync(BERTH_ROOT)) {
    console.error(`proto-check: berth proto directory not found: ${BERTH_ROOT}`);
    return 1;
  }
  const berthFiles = walkProtoFiles(BERTH_ROOT);
  const problems = [];
  const notes = [];
  const relOf = (file) => path.relative(BERTH_ROOT, file);

  for (const file of berthFiles) lintBerthFile(file, relOf(file), problems);

  // Load all berth files the way the daemon does: one root, include path proto/.
  const broot = new protobuf.Root();
  broot.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(BERTH_ROOT, target));
  try {
    broot.loadSync(berthFiles, { keepCase: true });
    broot.resolveAll();
  } catch (err) {
    console.error(`proto-check: failed to load berth protos: ${err.message}`);
    return 1;
  }
  for (const file of broot.files) {
    if (!bundledCommon(file) && !file.startsWith(BERTH_ROOT + path.sep)) {
      problems.push(`berth proto import resolved outside ${BERTH_ROOT}: ${file}`);
    }
  }

  if (!fs.existsSync(CTRD_API)) {
    if (problems.length) return report(problems, notes);
    console.log(`proto-check: skipped (containerd API protos not found at ${CTRD_API}); ${berthFiles.length} berth files load`);
    return 0;
  }

  let nFiles = 0;
  let nMessages = 0;
  let nServices = 0;

  for (const file of berthFiles) {
    const rel = relOf(file);
    const cands = upstreamCandidates(rel);
    if (cands.length === 0) {
      notes.push(`${rel}: no upstream counterpart known; load-checked only`);
      continue;
    }
    const upstreamFile = cands.find((c) => fs.existsSync(c));
    if (!upstreamFile) {
      notes.push(`${rel}: upstream not found (tried ${cands.join(', ')}); load-checked only`);
      continue;
    }

    const uroot = new protobuf.Root();
    const uproblems = [];
    try {
      loadUpstream(uroot, upstreamFile, new Set(), uproblems);
      uroot.resolveAll();
    } catch (err) {
      problems.push(`${rel}: failed to load upstream ${upstreamFile}: ${err.message}`);
      continue;
    }
    problems.push(...uproblems);

    const mine = collect(broot, (o) => o.filename === file);
    const theirs = collect(uroot, (o) => o.filename === upstreamFile);
    const diffs = compareFile(mine, theirs, uroot);
    for (const d of diffs) problems.push(`${rel}: ${d}`);

    nFiles++;
    nMessages += mine.types.length;
    nServices += mine.services.length;
  }

  if (problems.length) return report(problems, notes);
  for (const n of notes) console.log(`proto-check: note: ${n}`);
  console.log(`proto-check: ${nFiles} files, ${nMessages} messages, ${nServices} services match containerd`);
  return 0;
}

function report(problems, notes) {
  for (const n of notes) console.log(`proto-check: note: ${n}`);
  for (const p of problems) console.error(`  ${p}`);
  console.error(`proto-check: ${problems.length} difference(s) from containerd`);
  return 1;
}

function compareFile(mine, theirs, uroot) {
  const diffs = [];
  const canon = (name) => {
    if (name in TYPE_ALIASES && !lookupQuiet(uroot, name)) return TYPE_ALIASES[name];
    return name;
  };
  const shapeOf = (field) => {
    const s = fieldShape(field);
    s.type = canon(s.type);
    return s;
  };

  // messages
  const seenUpstream = new Set();
  for (const t of mine.types) {
    const name = canon(t.fullName);
    const up = lookupQuiet(uroot, name);
    const mineFields = t.fieldsArray.map(shapeOf);
    if (!(up instanceof protobuf.Type)) {
      const spec = BERTH_EXTRAS.messages[t.fullName];
      if (!spec) {
        diffs.push(`message ${t.fullName} not found upstream`);
        continue;
      }
      diffs.push(...compareToSpec(`message ${t.fullName}`, mineFields, spec));
      continue;
    }
    seenUpstream.add(up.fullName);
    const upFields = up.fieldsArray.map((x) => fieldShape(x));
    const extras = BERTH_EXTRAS.fields[t.fullName] ?? [];
    for (const mf of mineFields) {
      const uf = upFields.find((x) => x.name === mf.name);
      if (uf) {
        for (const key of ['id', 'type', 'repeated', 'map', 'optional', 'packed', 'oneof']) {
          if (mf[key] !== uf[key]) diffs.push(`${t.fullName}.${mf.name}: ${key} is ${fmt(mf[key])}, upstream ${fmt(uf[key])} (${describe(uf)})`);
        }
        continue;
      }
      const spec = extras.find((x) => x.name === mf.name);
      if (!spec) {
        diffs.push(`${t.fullName}: field ${describe(mf)} not upstream`);
        continue;
      }
      diffs.push(...compareToSpec(`${t.fullName}`, [mf], [spec]));
      const clash = upFields.find((x) => x.id === mf.id);
      if (clash) {
        diffs.push(`${t.fullName}.${mf.name}: number ${mf.id} is used upstream by ${describe(clash)}`);
      }
    }
    for (const uf of upFields) {
      if (!mineFields.some((x) => x.name === uf.name)) diffs.push(`${t.fullName}: missing upstream field ${describe(uf)}`);
    }
  }
  for (const ut of theirs.types) {
    if (!seenUpstream.has(ut.fullName)) diffs.push(`missing upstream message ${ut.fullName}`);
  }

  // enums
  const seenEnums = new Set();
  for (const e of mine.enums) {
    const up = lookupQuiet(uroot, e.fullName);
    if (!(up instanceof protobuf.Enum)) {
      diffs.push(`enum ${e.fullName} not found upstream`);
      continue;
    }
    seenEnums.add(up.fullName);
    const a = JSON.stringify(Object.entries(e.values).sort());
    const b = JSON.stringify(Object.entries(up.values).sort());
    if (a !== b) diffs.push(`enum ${e.fullName}: values ${a}, upstream ${b}`);
  }
  for (const ue of theirs.enums) {
    if (!seenEnums.has(ue.fullName)) diffs.push(`missing upstream enum ${ue.fullName}`);
  }

  // services
  const seenServices = new Set();
  for (const s of mine.services) {
    const up = lookupQuiet(uroot, s.fullName);
    if (!(up instanceof protobuf.Service)) {
      diffs.push(`service ${s.fullName} not found upstream`);
      continue;
    }
    seenServices.add(up.fullName);
    const extras = BERTH_EXTRAS.methods[s.fullName] ?? [];
    for (const m of s.methodsArray) {
      const mm = methodShape(m, canon);
      const um = up.methods[m.name];
      const ref = um ? methodShape(um, (x) => x) : extras.find((x) => x.name === m.name);
      if (!ref) {
        diffs.push(`${s.fullName}: method ${m.name} not upstream`);
        continue;
      }
      for (const key of ['requestType', 'responseType', 'requestStream', 'responseStream']) {
        if (mm[key] !== ref[key]) diffs.push(`${s.fullName}.${m.name}: ${key} is ${fmt(mm[key])}, upstream ${fmt(ref[key])}`);
      }
    }
    for (const um of up.methodsArray) {
      if (!s.methods[um.name]) diffs.push(`${s.fullName}: missing upstream method ${um.name}`);
    }
  }
  for (const us of theirs.services) {
    if (!seenServices.has(us.fullName)) diffs.push(`missing upstream service ${us.fullName}`);
  }
  return diffs;
}

function compareToSpec(where, mineFields, spec) {
  const diffs = [];
  for (const sf of spec) {
    const mf = mineFields.find((x) => x.name === sf.name);
    if (!mf) {
      diffs.push(`${where}: missing field ${describe(sf)}`);
      continue;
    }
    for (const key of ['id', 'type', 'repeated', 'map', 'optional']) {
      if (mf[key] !== sf[key]) diffs.push(`${where}.${mf.name}: ${key} is ${fmt(mf[key])}, expected ${fmt(sf[key])}`);
    }
  }
  for (const mf of mineFields) {
    if (!spec.some((x) => x.name === mf.name)) diffs.push(`${where}: unexpected field ${describe(mf)}`);
  }
  return diffs;
}

function methodShape(m, canon) {
  return {
    name: m.name,
    requestType: canon(m.resolvedRequestType.fullName),
    responseType: canon(m.resolvedResponseType.fullName),
    requestStream: !!m.requestStream,
    responseStream: !!m.responseStream,
  };
}

function lookupQuiet(root, name) {
  try {
    return root.lookup(name);
  } catch {
    return null;
  }
}

function fmt(v) {
  return v === null || v === undefined ? String(v) : JSON.stringify(v);
}

process.exitCode = main();
