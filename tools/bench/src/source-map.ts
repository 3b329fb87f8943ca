import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const DIGIT = new Map([...BASE64].map((c, i) => [c, i]));

/** The numbers of one source-map segment (base64 VLQ, 5 bits a digit, sign in the lowest bit). */
export function decodeVlq(segment: string): number[] {
  const out: number[] = [];
  let value = 0;
  let shift = 0;
  for (const c of segment) {
    const digit = DIGIT.get(c);
    if (digit === undefined) throw new Error(`bad VLQ digit ${c}`);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
      continue;
    }
    out.push(value & 1 ? -(value >>> 1) : value >>> 1);
    value = 0;
    shift = 0;
  }
  return out;
}

/** Per generated line: [generated column, source index, original line], 0-based, by column. */
type Lines = [number, number, number][][];

interface LoadedMap {
  readonly sources: readonly string[];
  readonly lines: Lines;
}

export function decodeMappings(mappings: string): Lines {
  const lines: Lines = [];
  let source = 0;
  let line = 0;
  for (const generated of mappings.split(';')) {
    let column = 0;
    const segments: [number, number, number][] = [];
    for (const seg of generated.split(',')) {
      if (!seg) continue;
      const [col = 0, src, orig] = decodeVlq(seg);
      column += col;
      if (src === undefined || orig === undefined) continue;
      source += src;
      line += orig;
      segments.push([column, source, line]);
    }
    lines.push(segments);
  }
  return lines;
}

/** Maps positions in built files (dist/*.js with their .js.map) back to the TypeScript sources. */
export class SourceMapper {
  private readonly maps = new Map<string, LoadedMap | undefined>();

  /** The original file and 1-based line of a 0-based generated position; undefined without a map. */
  original(file: string, line: number, column: number): { file: string; line: number } | undefined {
    const map = this.load(file);
    const segments = map?.lines[line];
    if (!map || !segments?.length) return undefined;
    let best = segments[0] as [number, number, number];
    for (const s of segments) if (s[0] <= column) best = s;
    const source = map.sources[best[1]];
    return source === undefined ? undefined : { file: source, line: best[2] + 1 };
  }

  private load(file: string): LoadedMap | undefined {
    if (this.maps.has(file)) return this.maps.get(file);
    let loaded: LoadedMap | undefined;
    const path = `${file}.map`;
    if (existsSync(path)) {
      try {
        const raw = JSON.parse(readFileSync(path, 'utf8')) as { sources?: string[]; sourceRoot?: string; mappings?: string };
        const base = resolve(dirname(file), raw.sourceRoot ?? '');
        loaded = { sources: (raw.sources ?? []).map((s) => resolve(base, s)), lines: decodeMappings(raw.mappings ?? '') };
      } catch {
        loaded = undefined;
      }
    }
    this.maps.set(file, loaded);
    return loaded;
  }
}
