import { InvalidArgumentError } from '@berth/plugin-api';

/** An OCI platform, as an index entry carries it. */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64', armhf: 'arm', armel: 'arm', i386: '386' };

/** `os/arch[/variant]` or `arch`, normalized as containerd's platforms package does (aarch64 → arm64, arm64/v8 → arm64). */
export function parsePlatform(text: string): Platform {
  const parts = text.toLowerCase().split('/');
  if (parts.length > 3 || parts.some((p) => p === '')) throw new InvalidArgumentError(`invalid platform ${JSON.stringify(text)}: want os/arch[/variant]`);
  const [a, b, c] = parts as [string, string?, string?];
  return normalizePlatform(b === undefined ? { os: 'linux', architecture: a } : { os: a, architecture: b, ...(c ? { variant: c } : {}) });
}

export function normalizePlatform(p: Platform): Platform {
  const architecture = ARCH_ALIASES[p.architecture] ?? p.architecture;
  let variant = p.variant;
  if (architecture === 'arm64' && variant === 'v8') variant = undefined;
  if (architecture === 'arm' && !variant) variant = 'v7';
  if (architecture === 'amd64' && variant === 'v1') variant = undefined;
  return { os: p.os, architecture, ...(variant ? { variant } : {}) };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** Whether an index entry's platform is the one wanted (an entry without a variant matches any). */
export function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return false;
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  return w.os === h.os && w.architecture === h.architecture && (!w.variant || !h.variant || w.variant === h.variant);
}
