import { InvalidArgumentError } from '@berth/plugin-api';

/** An OCI platform as it appears in index entries (JSON field names). */
export interface OciPlatform {
  readonly architecture: string;
  readonly os: string;
  readonly 'os.version'?: string;
  readonly 'os.features'?: readonly string[];
  readonly variant?: string;
}

/** Decides which platforms of a multi-platform image to take. */
export interface PlatformMatcher {
  match(p: OciPlatform): boolean;
  readonly description: string;
}

function normalizeOs(os: string): string {
  const lower = os.toLowerCase();
  return lower === 'macos' ? 'darwin' : lower;
}

/** containerd's platforms.normalizeArch. */
function normalizeArch(arch: string, variant: string): [string, string] {
  arch = arch.toLowerCase();
  variant = variant.toLowerCase();
  switch (arch) {
    case 'i386':
      return ['386', ''];
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return ['amd64', variant === 'v1' ? '' : variant];
    case 'aarch64':
    case 'arm64':
      return ['arm64', variant === '8' || variant === 'v8' ? '' : variant];
    case 'armhf':
      return ['arm', 'v7'];
    case 'armel':
      return ['arm', 'v6'];
    case 'arm':
      if (variant === '' || variant === '7') return ['arm', 'v7'];
      if (variant === '5' || variant === '6' || variant === '8') return ['arm', `v${variant}`];
      return ['arm', variant];
    default:
      return [arch, variant];
  }
}

/** containerd's platforms.Normalize: lower case, canonical architecture names and variants. */
export function normalizePlatform(p: OciPlatform): OciPlatform {
  const [architecture, variant] = normalizeArch(p.architecture ?? '', p.variant ?? '');
  return { ...p, os: normalizeOs(p.os ?? ''), architecture, ...(variant ? { variant } : { variant: undefined }) };
}

/** `linux/arm64/v8`, as ctr prints platforms. */
export function formatPlatform(p: OciPlatform): string {
  return [p.os || 'unknown', p.architecture || 'unknown', p.variant].filter(Boolean).join('/');
}

/** This host's platform (what Go's runtime.GOOS/GOARCH would say). */
export function hostPlatform(): OciPlatform {
  const arch: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return normalizePlatform({ os: process.platform === 'win32' ? 'windows' : process.platform, architecture: arch[process.arch] ?? process.arch });
}

/** `os`, `arch`, `os/arch` or `os/arch/variant`, as containerd's platforms.Parse. */
export function parsePlatform(spec: string): OciPlatform {
  const parts = spec.split('/');
  const bad = () => new InvalidArgumentError(`invalid platform ${JSON.stringify(spec)}: want os/arch[/variant]`);
  if (parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p)) || parts.length > 3) throw bad();
  if (parts.length === 1) {
    const [one = ''] = parts;
    const os = normalizeOs(one);
    // A known OS alone means this host's architecture; anything else is an architecture on Linux.
    if (['linux', 'windows', 'darwin', 'freebsd', 'netbsd', 'openbsd', 'solaris', 'illumos', 'android', 'aix'].includes(os)) {
      return normalizePlatform({ ...hostPlatform(), os });
    }
    return normalizePlatform({ os: 'linux', architecture: one });
  }
  const [os = '', architecture = '', variant] = parts;
  return normalizePlatform({ os, architecture, ...(variant ? { variant } : {}) });
}

const same = (a: OciPlatform, b: OciPlatform) => {
  const na = normalizePlatform(a);
  const nb = normalizePlatform(b);
  return na.os === nb.os && na.architecture === nb.architecture && (na.variant ?? '') === (nb.variant ?? '');
};

/** Platforms a host of `p` can run (containerd's platformVector, used by platforms.Only). */
function compatible(p: OciPlatform): OciPlatform[] {
  const n = normalizePlatform(p);
  const out: OciPlatform[] = [n];
  if (n.architecture === 'amd64') {
    const v = Number((n.variant ?? '').replace(/^v/, ''));
    for (let i = v - 1; Number.isInteger(v) && v > 1 && i >= 1; i--) out.push({ ...n, variant: `v${i}` });
    out.push({ os: n.os, architecture: '386' });
  } else if (n.architecture === 'arm') {
    const v = Number((n.variant ?? '').replace(/^v/, ''));
    for (let i = v - 1; Number.isInteger(v) && v > 5 && i >= 5; i--) out.push({ ...n, variant: `v${i}` });
  } else if (n.architecture === 'arm64') {
    out.push(...compatible({ os: n.os, architecture: 'arm', variant: n.variant || 'v8' }));
  }
  return out;
}

export const Platforms = {
  /** Every platform. */
  all: { match: () => true, description: 'all platforms' } as PlatformMatcher,
  /** `p` and what it can run (containerd's platforms.Only; the default for import is Only(host)). */
  only(p: OciPlatform): PlatformMatcher {
    const list = compatible(p);
    return { match: (q) => list.some((c) => same(c, q)), description: formatPlatform(normalizePlatform(p)) };
  },
  /** Exactly `p` (containerd's platforms.OnlyStrict). */
  strict(p: OciPlatform): PlatformMatcher {
    return { match: (q) => same(p, q), description: formatPlatform(normalizePlatform(p)) };
  },
};
