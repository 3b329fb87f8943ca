/** What containerd passes a shim (`-namespace ns -address a -publish-binary b -id x [-bundle p] [-debug] start`), Go flag style. */
export interface ShimFlags {
  readonly namespace: string;
  readonly address: string;
  readonly publishBinary: string;
  readonly id: string;
  readonly bundle: string;
  readonly debug: boolean;
  readonly version: boolean;
  /** berth's own: the socket `serve` listens on and the group it serves (start computes both). */
  readonly socket: string;
  readonly group: string;
  /** berth's own: `serve` as a spare, which learns its group (namespace, id, socket) on descriptor 3. */
  readonly spare: boolean;
  readonly command: string;
  readonly args: readonly string[];
}

const VALUE_FLAGS: Record<string, keyof ShimFlags> = {
  namespace: 'namespace',
  address: 'address',
  'publish-binary': 'publishBinary',
  id: 'id',
  bundle: 'bundle',
  socket: 'socket',
  group: 'group',
};
const BOOL_FLAGS: Record<string, keyof ShimFlags> = { debug: 'debug', v: 'version', version: 'version', spare: 'spare' };

/** Parses Go's flag syntax (`-name value`, `-name=value`, `--name`), stopping at the first non-flag. */
export function parseFlags(argv: readonly string[]): ShimFlags {
  const out: Record<string, unknown> = {
    namespace: '',
    address: '',
    publishBinary: '',
    id: '',
    bundle: '',
    debug: false,
    version: false,
    socket: '',
    group: '',
    spare: false,
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      i++;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq === -1 ? body : body.slice(0, eq);
    if (name in BOOL_FLAGS) {
      out[BOOL_FLAGS[name] as string] = eq === -1 ? true : !['false', '0', 'f', 'F', 'FALSE', 'False'].includes(body.slice(eq + 1));
      continue;
    }
    const key = VALUE_FLAGS[name];
    if (!key) throw new Error(`flag provided but not defined: -${name}`);
    if (eq !== -1) out[key] = body.slice(eq + 1);
    else {
      const value = argv[++i];
      if (value === undefined) throw new Error(`flag needs an argument: -${name}`);
      out[key] = value;
    }
  }
  return { ...(out as Omit<ShimFlags, 'command' | 'args'>), command: argv[i] ?? '', args: argv.slice(i + 1) };
}

/** Set by `start` for the `serve` it spawns: the descriptor to write the one-line ready report to. */
export const REPORT_FD_ENV = 'BERTH_SHIM_REPORT_FD';
