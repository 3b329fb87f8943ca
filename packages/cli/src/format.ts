import type { Labels } from '@berth/plugin-api';
import { UsageError } from './exit-code.js';

/** Columns padded to their widest cell; the last column is not padded. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('    ')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** `k=v,k2=v2`, sorted by key, as ctr prints labels. */
export function formatLabels(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

/** `KEY=VALUE` arguments; the value may be empty (`KEY=`) and may contain `=`. */
export function parseLabels(args: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid label ${JSON.stringify(arg)}: want KEY=VALUE`);
    labels[arg.slice(0, eq)] = arg.slice(eq + 1);
  }
  return labels;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `1.5s`, `500ms`, `2m`, `1h30m` (Go durations, as ctr takes them); a bare number is seconds. */
export function parseDuration(text: string): number {
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) {
    throw new UsageError(`invalid duration ${JSON.stringify(text)}: use e.g. 500ms, 10s, 2m`);
  }
  return parts.reduce((ms, p) => ms + Number(p[1]) * (UNIT_MS[p[2] ?? 's'] ?? 1000), 0);
}
