/**
 * containerd's filter syntax (as accepted by List/Subscribe `filters` fields):
 *
 *   filter    := selector ("," selector)*          all selectors must match
 *   selector  := fieldpath [operator value]        no operator: field is present
 *   fieldpath := field ("." field)*
 *   field     := [A-Za-z0-9_]+ | quoted
 *   operator  := "==" | "!=" | "~="                "~=": value is a regexp
 *   value     := quoted | bare word
 *   quoted    := "Go string" | `raw string`        plus /…/ and |…| after "~="
 *
 * Several filter strings given together match when any of them does.
 */
import { InvalidArgumentError } from './errors.js';

/** Returns the value of a field, or undefined when absent. fieldpath is the split path, e.g. ['labels','a.b']. */
export type FieldAdaptor = (fieldpath: readonly string[]) => string | undefined;

export interface Filter {
  match(adaptor: FieldAdaptor): boolean;
}

const always: Filter = { match: () => true };

/** Parse one filter string (AND of selectors). */
export function parseFilter(input: string): Filter {
  // containerd special-cases the empty string as "match everything"; whitespace alone is still an error.
  if (input === '') return always;
  return new Parser(input).filter();
}

/** Parse several filter strings; the result matches when any matches (OR); none → always true. */
export function parseFilters(inputs: readonly string[]): Filter {
  if (inputs.length === 0) return always;
  const filters = inputs.map(parseFilter);
  return { match: (adaptor) => filters.some((f) => f.match(adaptor)) };
}

/**
 * Helper for adaptors: look up ['labels', key] style paths in a labels record.
 * The first component names the map; the rest is joined with "." (as containerd
 * does), so `labels.a.b` and `labels."a.b"` both address the key "a.b".
 */
export function labelAdaptor(
  labels: Readonly<Record<string, string>>,
  fieldpath: readonly string[],
): string | undefined {
  if (fieldpath.length < 2) return undefined;
  const key = fieldpath.slice(1).join('.');
  return Object.hasOwn(labels, key) ? labels[key] : undefined;
}

type Operator = '==' | '!=' | '~=';

// Go's unicode.IsSpace.
const SPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
const FIELD = /[A-Za-z0-9_]/;
// Go's IsLetter || IsDigit || IsNumber || IsGraphic || IsPunct, minus spaces.
const VALUE = /[\p{L}\p{M}\p{N}\p{P}\p{S}]/u;
// containerd's scanner reads these as separators or operators, never as the start of a bare value.
const NOT_VALUE_START = new Set([',', '.', '=', '!', '~']);
const SIMPLE_ESCAPES = new Map([
  ['a', 7], ['b', 8], ['f', 12], ['n', 10], ['r', 13], ['t', 9], ['v', 11], ['\\', 92],
]);
const HEX = /^[0-9A-Fa-f]+$/;
const OCTAL_ESCAPE = { count: 3, digits: /^[0-7]+$/, max: 0xff };
const HEX_ESCAPES = new Map([
  ['x', { count: 2, digits: HEX, max: 0xff }],
  ['u', { count: 4, digits: HEX, max: 0x10ffff }],
  ['U', { count: 8, digits: HEX, max: 0x10ffff }],
]);

class Parser {
  private pos = 0;

  constructor(private readonly input: string) {}

  filter(): Filter {
    const selectors = [this.selector()];
    while (this.peek() === ',') {
      this.pos++;
      selectors.push(this.selector());
    }
    if (this.peek() !== undefined) this.expected('","');
    return { match: (adaptor) => selectors.every((s) => s.match(adaptor)) };
  }

  private selector(): Filter {
    const path = this.fieldpath();
    const next = this.peek();
    if (next === undefined || next === ',') return { match: (adaptor) => adaptor(path) !== undefined };

    const op = this.operator();
    this.peek(); // skip whitespace so that `at` is where the value starts
    const at = this.pos;
    const value = this.value(op);
    // Absent fields compare as "" for != and ~=, as in containerd.
    switch (op) {
      case '==':
        return { match: (adaptor) => adaptor(path) === value };
      case '!=':
        return { match: (adaptor) => (adaptor(path) ?? '') !== value };
      case '~=': {
        const re = this.regexp(value, at);
        return { match: (adaptor) => re.test(adaptor(path) ?? '') };
      }
    }
  }

  private fieldpath(): string[] {
    const path = [this.field()];
    while (this.peek() === '.') {
      this.pos++;
      path.push(this.field());
    }
    return path;
  }

  private field(): string {
    const c = this.peek();
    if (c === '"' || c === '`') return this.quoted();
    const start = this.pos;
    while (FIELD.test(this.input[this.pos] ?? '')) this.pos++;
    if (this.pos === start) this.expected('field');
    return this.input.slice(start, this.pos);
  }

  private operator(): Operator {
    const start = this.pos;
    while (/[=!~]/.test(this.input[this.pos] ?? '')) this.pos++;
    const op = this.input.slice(start, this.pos);
    if (op === '') this.expected('operator ("==", "!=" or "~=") or ","');
    if (op !== '==' && op !== '!=' && op !== '~=') {
      this.fail(`unsupported operator ${JSON.stringify(op)} (want "==", "!=" or "~=")`, start);
    }
    return op;
  }

  private value(op: Operator): string {
    const first = this.peek();
    if (first === '"' || first === '`') return this.quoted();
    if (first === '/' || first === '|') {
      // containerd reserves these as regexp delimiters, so e.g. `topic==/tasks/exit` is an error there too.
      if (op !== '~=') this.fail(`${first}-quoted value is only allowed after "~=" (use double quotes)`);
      return this.quoted();
    }
    if (first === undefined || NOT_VALUE_START.has(first) || !VALUE.test(first)) this.expected('value');
    const start = this.pos;
    let c = this.charAt(start);
    while (c !== undefined && c !== ',' && VALUE.test(c)) {
      this.pos += c.length;
      c = this.charAt(this.pos);
    }
    return this.input.slice(start, this.pos);
  }

  private quoted(): string {
    const start = this.pos;
    const quote = this.input.charAt(this.pos++);
    if (quote === '`') {
      const end = this.input.indexOf('`', this.pos);
      if (end < 0) this.fail('unterminated quoted string', start);
      const raw = this.input.slice(this.pos, end);
      this.pos = end + 1;
      return raw.replaceAll('\r', ''); // as Go does for raw strings
    }
    // Bytes, not characters: \x and octal escapes produce single bytes that may combine into UTF-8.
    const bytes: number[] = [];
    for (;;) {
      const c = this.charAt(this.pos);
      if (c === undefined || c === '\n') this.fail('unterminated quoted string', start);
      this.pos += c.length;
      if (c === quote) return Buffer.from(bytes).toString('utf8');
      if (c === '\\') this.escape(quote, start, bytes);
      else bytes.push(...Buffer.from(c));
    }
  }

  private escape(quote: string, start: number, bytes: number[]): void {
    const at = this.pos - 1;
    const c = this.input[this.pos++];
    if (c === undefined) this.fail('unterminated quoted string', start);
    const simple = SIMPLE_ESCAPES.get(c);
    if (simple !== undefined || c === quote) {
      bytes.push(simple ?? c.charCodeAt(0));
      return;
    }
    const octal = c >= '0' && c <= '7';
    const spec = octal ? OCTAL_ESCAPE : HEX_ESCAPES.get(c);
    const begin = octal ? this.pos - 1 : this.pos;
    const digits = spec ? this.input.slice(begin, begin + spec.count) : '';
    this.pos = begin + digits.length;
    const code = Number.parseInt(digits, octal ? 8 : 16);
    if (!spec || digits.length < spec.count || !spec.digits.test(digits) || code > spec.max) {
      this.fail(`invalid escape sequence ${JSON.stringify(this.input.slice(at, this.pos))}`, at);
    }
    if (spec.max === 0xff) bytes.push(code);
    else bytes.push(...Buffer.from(String.fromCodePoint(code))); // a surrogate encodes as U+FFFD, like Go
  }

  private regexp(source: string, at: number): RegExp {
    // Go's leading flag group, e.g. (?i), becomes JS flags; JS has no inline form.
    const flagGroup = /^\(\?([ims]+)\)/.exec(source);
    const flags = flagGroup ? [...new Set(flagGroup[1])].join('') : '';
    // Go accepts any escaped ASCII punctuation (\-, \:, \@); Unicode-mode JS only its own syntax characters.
    const pattern = source
      .slice(flagGroup?.[0].length ?? 0)
      .replace(/\\([\s\S])/gu, (seq, c: string) =>
        /[!-/:-@[-`{-~]/.test(c) && !'^$\\.*+?()[]{}|/'.includes(c) ? `\\x${c.charCodeAt(0).toString(16)}` : seq,
      );
    try {
      return new RegExp(pattern, `${flags}u`);
    } catch (err) {
      const reason = (err as Error).message;
      const detail = reason.slice(reason.lastIndexOf(': ') + 2);
      this.fail(`invalid regular expression ${JSON.stringify(source)} (${detail})`, at);
    }
  }

  /** The next character after whitespace, or undefined at the end. */
  private peek(): string | undefined {
    while (SPACE.test(this.input[this.pos] ?? '')) this.pos++;
    return this.charAt(this.pos);
  }

  private charAt(index: number): string | undefined {
    const cp = this.input.codePointAt(index);
    return cp === undefined ? undefined : String.fromCodePoint(cp);
  }

  private expected(what: string): never {
    const c = this.charAt(this.pos);
    this.fail(c === undefined ? `expected ${what}` : `expected ${what} but found ${JSON.stringify(c)}`);
  }

  private fail(message: string, at = this.pos): never {
    throw new InvalidArgumentError(`invalid filter ${JSON.stringify(this.input)}: ${message} at position ${at}`);
  }
}
