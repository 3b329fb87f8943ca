import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SourceMapper } from './source-map.js';

/** The parts of a V8 .cpuprofile (what `node --cpu-prof` writes) that the summary reads. */
export interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number;
    readonly callFrame: {
      readonly functionName: string;
      readonly url: string;
      readonly lineNumber: number;
      readonly columnNumber?: number;
    };
    readonly children?: readonly number[];
  }[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

export interface HotFunction {
  /** `file:line function`, the file relative to the repository where it is in it. */
  readonly where: string;
  readonly functionName: string;
  readonly file: string;
  readonly line: number;
  readonly ms: number;
  /** Share of the profile's busy time (everything but `(idle)`), in %. */
  readonly percent: number;
  /** Self time only: the caller it is most often reached from, the nearest frame outside node's own code. */
  readonly via?: string;
}

export interface ProfileSummary {
  /** Sampled time, ms, and the part of it that was not idle. */
  readonly totalMs: number;
  readonly busyMs: number;
  /** Time spent in the function itself, all of the process. */
  readonly self: readonly HotFunction[];
  /** Time in the function and what it called: berth's own code only (not node_modules, not node:). */
  readonly inclusiveOwn: readonly HotFunction[];
}

export interface SummaryOptions {
  /** Where paths are made relative to (and what counts as berth's own code). */
  readonly repoRoot?: string;
  /** Entries per list (default 15). */
  readonly top?: number;
  /**
   * Only the samples taken inside these [start, end] intervals, in microseconds of
   * CLOCK_MONOTONIC: the profile's own clock, and process.hrtime's / 1000 in any process.
   */
  readonly windows?: readonly (readonly [number, number])[];
}

/** A call frame's file (the TypeScript source where dist/ has a source map) and 1-based line. */
function placeOf(frame: CpuProfile['nodes'][number]['callFrame'], repoRoot: string, maps: SourceMapper): { file: string; line: number } {
  // lineNumber and columnNumber are 0-based in the profile.
  let file = frame.url.startsWith('file://') ? fileURLToPath(frame.url) : frame.url;
  let line = frame.lineNumber + 1;
  if (file.startsWith('/')) {
    const original = maps.original(file, frame.lineNumber, frame.columnNumber ?? 0);
    if (original) ({ file, line } = original);
    if (repoRoot) file = relative(repoRoot, file);
  }
  return { file, line };
}

const isOwn = (file: string) => file !== '' && !file.startsWith('node:') && !file.startsWith('..') && !file.includes('node_modules/');

/**
 * Self and inclusive time per function, from the samples (each takes the time until the next
 * sample). Recursion counts once per sample in the inclusive figures.
 */
export function summarizeProfile(profile: CpuProfile, opts: SummaryOptions = {}): ProfileSummary {
  const top = opts.top ?? 15;
  const repoRoot = opts.repoRoot ?? '';
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const maps = new SourceMapper();
  const keys = new Map<number, string>();
  const keyOf = (id: number) => {
    let key = keys.get(id);
    if (key === undefined) {
      const f = byId.get(id)?.callFrame;
      const at = f ? placeOf(f, repoRoot, maps) : { file: '', line: 0 };
      key = `${at.file}\u0000${at.line}\u0000${f?.functionName || '(anonymous)'}`;
      keys.set(id, key);
    }
    return key;
  };
  const fileOfKey = (key: string) => key.slice(0, key.indexOf('\u0000'));
  const inWindow = (t: number) => !opts.windows || opts.windows.some(([a, b]) => t >= a && t <= b);

  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const self = new Map<string, number>();
  const via = new Map<string, Map<string, number>>();
  const inclusive = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  let at = profile.startTime;
  for (let i = 0; i < samples.length; i++) {
    at += deltas[i] ?? 0;
    if (!inWindow(at)) continue;
    const id = samples[i] as number;
    // timeDeltas[i] is the gap before sample i: the time sample i stands for is the next gap.
    const us = Math.max(0, i + 1 < deltas.length ? (deltas[i + 1] as number) : 0);
    totalUs += us;
    const key = keyOf(id);
    if (byId.get(id)?.callFrame.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    self.set(key, (self.get(key) ?? 0) + us);
    const seen = new Set<string>();
    let caller: string | undefined;
    for (let node: number | undefined = id; node !== undefined; node = parent.get(node)) {
      const k = keyOf(node);
      const file = fileOfKey(k);
      if (caller === undefined && k !== key && file !== '' && !file.startsWith('node:')) caller = k;
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
    if (caller !== undefined) {
      const callers = via.get(key) ?? new Map<string, number>();
      callers.set(caller, (callers.get(caller) ?? 0) + us);
      via.set(key, callers);
    }
  }
  const busyUs = totalUs - idleUs;
  const where = (key: string) => {
    const [file = '', line = '0', functionName = ''] = key.split('\u0000');
    return { where: file ? `${file}:${line} ${functionName}` : functionName, functionName, file, line: Number(line) };
  };
  const rank = (m: Map<string, number>, keep: (file: string) => boolean, withVia: boolean): HotFunction[] =>
    [...m.entries()]
      .filter(([key]) => keep(fileOfKey(key)))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, us]) => {
        const caller = withVia ? [...(via.get(key) ?? [])].sort((a, b) => b[1] - a[1])[0]?.[0] : undefined;
        return {
          ...where(key),
          ms: us / 1000,
          percent: busyUs > 0 ? (100 * us) / busyUs : 0,
          ...(caller ? { via: where(caller).where } : {}),
        };
      });
  return {
    totalMs: totalUs / 1000,
    busyMs: busyUs / 1000,
    self: rank(self, () => true, true),
    inclusiveOwn: rank(inclusive, isOwn, false),
  };
}

export async function readProfile(path: string): Promise<CpuProfile> {
  return JSON.parse(await readFile(path, 'utf8')) as CpuProfile;
}
