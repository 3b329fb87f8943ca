import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from './errors.js';
import { type FieldAdaptor, labelAdaptor, parseFilter, parseFilters } from './filters.js';

interface Obj {
  name?: string;
  other?: string;
  topic?: string;
  namespace?: string;
  labels?: Record<string, string>;
}

function adapt(obj: Obj): FieldAdaptor {
  return (fieldpath) => {
    switch (fieldpath[0]) {
      case 'name':
      case 'other':
      case 'topic':
      case 'namespace':
        return obj[fieldpath[0]];
      case 'labels':
        return obj.labels && labelAdaptor(obj.labels, fieldpath);
    }
    return undefined;
  };
}

// The corpus of containerd's own filter tests.
const corpus: Obj[] = [
  { name: 'foo', labels: { foo: 'true' } },
  { name: 'bar' },
  { name: 'foo', labels: { foo: 'present', 'more complex label': 'present' } },
  { name: 'bar', labels: { bar: 'true' } },
  { name: 'fooer', labels: { 'more complex label with \\ and "': 'present' } },
  { name: 'fooer', labels: { 'more complex label with \\ and ".post': 'present' } },
  { name: 'baz', other: 'too complex, yo' },
  { name: 'bazo', other: 'abc' },
  { name: 'compound', labels: { foo: 'omg_asdf.asdf-qwer' } },
];

/** Indexes of the corpus entries the filters select. */
function select(...filters: string[]): number[] {
  const filter = parseFilters(filters);
  return corpus.flatMap((obj, i) => (filter.match(adapt(obj)) ? [i] : []));
}

function matches(filter: string, obj: Obj): boolean {
  return parseFilter(filter).match(adapt(obj));
}

function assertInvalid(input: string | string[], message: string): void {
  assert.throws(
    () => (Array.isArray(input) ? parseFilters(input) : parseFilter(input)),
    (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, `not an InvalidArgumentError: ${String(err)}`);
      assert.equal(err.message, message);
      return true;
    },
  );
}

test("containerd's filter test cases", () => {
  const all = corpus.map((_, i) => i);
  assert.deepEqual(select(''), all);
  assert.deepEqual(select('name'), all);
  assert.deepEqual(select('labels.foo'), [0, 2, 8]);
  assert.deepEqual(select('labels.foo,name'), [0, 2, 8]);
  assert.deepEqual(select('labels.foo==true'), [0]);
  assert.deepEqual(select('labels.foo==omg_asdf.asdf-qwer'), [8]);
  assert.deepEqual(select('name==bar'), [1, 3]);
  assert.deepEqual(select('name!=bar'), [0, 2, 4, 5, 6, 7, 8]);
  assert.deepEqual(select('name==bar,labels.bar'), [3]);
  assert.deepEqual(select('other=="too complex, yo"'), [6]);
  assert.deepEqual(select('other~=[abc]+,name!=foo'), [6, 7]);
  assert.deepEqual(select('other~=/[abc]+/,name!=foo'), [6, 7]);
  assert.deepEqual(select('other~=/[abc]{1,2}/,name!=foo'), [6, 7]);
  assert.deepEqual(select('other~=/[abc]{0,1}"\\//,name!=foo'), []);
  assert.deepEqual(select('name==bar,labels.bar==true'), [3]);
  assert.deepEqual(select('name==bar,labels.bar==wrong'), []);
  assert.deepEqual(select('name==foo,labels."more complex label"'), [2]);
  assert.deepEqual(select('labels."more complex label with \\\\ and \\""==present'), [4]);
  assert.deepEqual(select('labels."more complex label with \\\\ and \\"".post==present'), [5]);
});

test('the examples berth relies on', () => {
  const exit = { topic: '/tasks/exit', namespace: 'default' };
  assert.ok(matches('topic=="/tasks/exit"', exit));
  assert.ok(matches('namespace==default', exit));
  assert.ok(!matches('namespace==x', exit));
  assert.ok(matches('topic~="^/tasks/"', exit));
  assert.ok(!matches('topic~="^/images/"', exit));
  assert.ok(matches('topic=="/namespaces/create",namespace==x', { topic: '/namespaces/create', namespace: 'x' }));
  assert.ok(!matches('topic=="/namespaces/create",namespace==x', { topic: '/namespaces/create', namespace: 'y' }));
  assert.ok(matches('labels.foo', { labels: { foo: '' } }));
  assert.ok(matches('labels."a.b"==c', { labels: { 'a.b': 'c' } }));
  assert.ok(matches('name~=^busybox', { name: 'busybox:latest' }));
  assert.ok(!matches('name~=^busybox', { name: 'docker.io/library/busybox' }));
  assert.ok(matches('name!=abc', { name: 'abd' }));
});

test('AND within a filter, OR across filters, empty filters match everything', () => {
  const obj = { name: 'foo', namespace: 'ns' };
  assert.ok(matches('name==foo,namespace==ns', obj));
  assert.ok(!matches('name==foo,namespace==other', obj));
  assert.ok(parseFilters(['name==bar', 'namespace==ns']).match(adapt(obj)));
  assert.ok(!parseFilters(['name==bar', 'namespace==other']).match(adapt(obj)));
  assert.ok(parseFilters([]).match(() => undefined));
  // containerd's Parse("") is "always", so one empty filter makes the whole OR true.
  assert.ok(parseFilters(['name==bar', '']).match(adapt(obj)));
  assert.deepEqual(select('name==bar', 'name==bazo'), [1, 3, 7]);
});

test('presence and absent fields', () => {
  assert.ok(matches('name', { name: '' }), 'an empty value is still present');
  assert.ok(!matches('name', {}));
  assert.ok(!matches('labels.a', { labels: { b: 'x' } }));
  // As in containerd, != and ~= see an absent field as "".
  assert.ok(matches('name!=abc', {}));
  assert.ok(!matches('name!=""', {}));
  assert.ok(!matches('name==""', {}));
  assert.ok(matches('name==""', { name: '' }));
  assert.ok(matches('name~=^$', {}));
  assert.ok(!matches('name~="."', {}));
});

test('field paths: bare, dotted, quoted', () => {
  const seen: (readonly string[])[] = [];
  parseFilter('a.b_1.C2,"x.y".`raw "q"`.z,labels."\\u263a"').match((path) => {
    seen.push(path);
    return '';
  });
  assert.deepEqual(seen, [['a', 'b_1', 'C2'], ['x.y', 'raw "q"', 'z'], ['labels', '☺']]);
  // Unquoted dots split the path; labelAdaptor joins them again like containerd's adaptors.
  assert.ok(matches('labels.containerd.io.gc.root', { labels: { 'containerd.io.gc.root': 'x' } }));
  assert.ok(matches('labels."containerd.io/gc.ref.content"==sha', { labels: { 'containerd.io/gc.ref.content': 'sha' } }));
});

test('bare values accept what containerd scanner accepts', () => {
  const v = (filter: string) => (candidate: string) => matches(filter, { name: candidate });
  assert.ok(v('name==a/b')('a/b'));
  assert.ok(v('name==a"b')('a"b'));
  assert.ok(v("name=='x'")("'x'"));
  assert.ok(v('name==a=b.c-d:e@f')('a=b.c-d:e@f'));
  assert.ok(v('name==牛')('牛'));
  assert.ok(v('name==😀x')('😀x'));
  assert.ok(v('name==-1')('-1'));
  assert.ok(v('name~=[abc]\\+')('b+'));
});

test('whitespace between tokens is ignored', () => {
  assert.ok(matches('  name == foo , labels . bar ', { name: 'foo', labels: { bar: '' } }));
  assert.ok(matches('name==\t"a b"\n', { name: 'a b' }));
});

test('double-quoted values use Go escapes', () => {
  const eq = (quoted: string, expected: string) =>
    assert.ok(matches(`name==${quoted}`, { name: expected }), `${quoted} should equal ${JSON.stringify(expected)}`);
  eq('"a\\"b"', 'a"b');
  eq('"a\\\\b"', 'a\\b');
  eq('"\\n\\t\\r\\a\\b\\f\\v"', '\n\t\r\x07\b\f\v');
  eq('"\\x41\\101"', 'AA');
  eq('"\\u263a\\U0001F600"', '☺😀');
  eq('"\\xe2\\x98\\xba"', '☺'); // bytes that form UTF-8
  eq('"\\ud800"', '\ufffd'); // a surrogate code point, as Go encodes it
  eq('"tab\tand\rcr"', 'tab\tand\rcr');
  eq('"a,b.c==d"', 'a,b.c==d');
  eq('"\ufeffbom"', '\ufeffbom');
  eq('""', '');
});

test('backtick values are raw', () => {
  assert.ok(matches('name==`a\\n"b`', { name: 'a\\n"b' }));
  assert.ok(matches('name==`line\r\nnext`', { name: 'line\nnext' }));
  assert.ok(matches('name~=`^a\\.b$`', { name: 'a.b' }));
});

test('regular expressions', () => {
  assert.ok(matches('name~=oo', { name: 'foo' }), 'unanchored');
  assert.ok(matches('name~=/^foo\\/bar$/', { name: 'foo/bar' }));
  assert.ok(matches('name~=|^foo/bar$|', { name: 'foo/bar' }));
  assert.ok(matches('name~=|牛|', { name: '牛乳' }));
  assert.ok(matches('name~="^a\\\\.b$"', { name: 'a.b' }));
  assert.ok(!matches('name~="^a\\\\.b$"', { name: 'axb' }));
  assert.ok(matches('name~=(?i)^BUSY', { name: 'busybox' }));
  assert.ok(matches('name~=^\\p{L}+$', { name: 'αβγ' }));
  assert.ok(matches('name~=^a\\:\\@[\\-x]$', { name: 'a:@-' }));
  assert.ok(matches('name~="^a\\\\\\\\b$"', { name: 'a\\b' }), 'an escaped backslash stays one');
  assert.ok(matches('name~=^a\\-b$', { name: 'a-b' }), 'Go allows escaping any punctuation');
  assert.ok(matches('name~=^.$', { name: '😀' }), '. matches a code point');
  const re = parseFilter('name~=o');
  assert.ok(re.match(() => 'foo') && re.match(() => 'foo'), 'no lastIndex state');
});

test('labelAdaptor', () => {
  const labels = { 'a.b': '1', c: '2' };
  assert.equal(labelAdaptor(labels, ['labels', 'a', 'b']), '1');
  assert.equal(labelAdaptor(labels, ['labels', 'a.b']), '1');
  assert.equal(labelAdaptor(labels, ['labels', 'c']), '2');
  assert.equal(labelAdaptor(labels, ['labels', 'd']), undefined);
  assert.equal(labelAdaptor(labels, ['labels']), undefined);
  assert.equal(labelAdaptor(labels, ['labels', 'constructor']), undefined);
  assert.equal(labelAdaptor(labels, ['labels', '__proto__']), undefined);
});

test('syntax errors name the problem and its position', () => {
  assertInvalid('topic==', 'invalid filter "topic==": expected value at position 7');
  assertInvalid('name=foo', 'invalid filter "name=foo": unsupported operator "=" (want "==", "!=" or "~=") at position 4');
  assertInvalid('name===foo', 'invalid filter "name===foo": unsupported operator "===" (want "==", "!=" or "~=") at position 4');
  assertInvalid('name=~foo', 'invalid filter "name=~foo": unsupported operator "=~" (want "==", "!=" or "~=") at position 4');
  assertInvalid('name==foo,', 'invalid filter "name==foo,": expected field at position 10');
  assertInvalid('labels.', 'invalid filter "labels.": expected field at position 7');
  assertInvalid('==x', 'invalid filter "==x": expected field but found "=" at position 0');
  assertInvalid(',name', 'invalid filter ",name": expected field but found "," at position 0');
  assertInvalid('a,,b', 'invalid filter "a,,b": expected field but found "," at position 2');
  assertInvalid('   ', 'invalid filter "   ": expected field at position 3');
  assertInvalid('image~=,id!=x', 'invalid filter "image~=,id!=x": expected value but found "," at position 7');
  assertInvalid('name==.x', 'invalid filter "name==.x": expected value but found "." at position 6');
  assertInvalid('name==foo bar', 'invalid filter "name==foo bar": expected "," but found "b" at position 10');
  assertInvalid('name=="a"b', 'invalid filter "name==\\"a\\"b": expected "," but found "b" at position 9');
  assertInvalid(
    'name?=x',
    'invalid filter "name?=x": expected operator ("==", "!=" or "~=") or "," but found "?" at position 4',
  );
  assertInvalid(
    'labels.?"x"',
    'invalid filter "labels.?\\"x\\"": expected field but found "?" at position 7',
  );
  // containerd only accepts / and | as quotes for regexps, and never in field paths.
  assertInvalid(
    'labels.ns/key==value',
    'invalid filter "labels.ns/key==value": expected operator ("==", "!=" or "~=") or "," but found "/" at position 9',
  );
  assertInvalid('labels.|foo|==x', 'invalid filter "labels.|foo|==x": expected field but found "|" at position 7');
  assertInvalid(
    'topic==/tasks/exit',
    'invalid filter "topic==/tasks/exit": /-quoted value is only allowed after "~=" (use double quotes) at position 7',
  );
});

test('quoting errors', () => {
  assertInvalid('name=="abc', 'invalid filter "name==\\"abc": unterminated quoted string at position 6');
  assertInvalid('name==`abc', 'invalid filter "name==`abc": unterminated quoted string at position 6');
  assertInvalid('name~=/abc', 'invalid filter "name~=/abc": unterminated quoted string at position 6');
  assertInvalid('name=="abc\\', 'invalid filter "name==\\"abc\\\\": unterminated quoted string at position 6');
  assertInvalid('labels."a\nb"', 'invalid filter "labels.\\"a\\nb\\"": unterminated quoted string at position 7');
  assertInvalid('labels."\\g"', 'invalid filter "labels.\\"\\\\g\\"": invalid escape sequence "\\\\g" at position 8');
  assertInvalid('labels."\\xaz"', 'invalid filter "labels.\\"\\\\xaz\\"": invalid escape sequence "\\\\xaz" at position 8');
  assertInvalid('name=="\\400"', 'invalid filter "name==\\"\\\\400\\"": invalid escape sequence "\\\\400" at position 7');
  assertInvalid('name=="\\12"', 'invalid filter "name==\\"\\\\12\\"": invalid escape sequence "\\\\12\\"" at position 7');
  assertInvalid(
    'name=="\\U00110000"',
    'invalid filter "name==\\"\\\\U00110000\\"": invalid escape sequence "\\\\U00110000" at position 7',
  );
  // Only the delimiter itself may be escaped, as in Go.
  assertInvalid("name==\"\\'\"", 'invalid filter "name==\\"\\\\\'\\"": invalid escape sequence "\\\\\'" at position 7');
  assertInvalid('name~=/\\d/', 'invalid filter "name~=/\\\\d/": invalid escape sequence "\\\\d" at position 7');
  assertInvalid('name~=|\\/|', 'invalid filter "name~=|\\\\/|": invalid escape sequence "\\\\/" at position 7');
});

test('invalid regular expressions are rejected when parsing', () => {
  assertInvalid('name~=(', 'invalid filter "name~=(": invalid regular expression "(" (Unterminated group) at position 6');
  // Go-only syntax is reported rather than silently read differently.
  assertInvalid('name~=\\p{Greek}', 'invalid filter "name~=\\\\p{Greek}": invalid regular expression "\\\\p{Greek}" (Invalid property name) at position 6');
  // containerd reads "." as a separator, so a regexp starting with it must be quoted.
  assertInvalid('name~=.*', 'invalid filter "name~=.*": expected value but found "." at position 6');
  assertInvalid('a==b,name~= "x("', 'invalid filter "a==b,name~= \\"x(\\"": invalid regular expression "x(" (Unterminated group) at position 12');
});

test('parseFilters reports the failing filter', () => {
  assertInvalid(['name==a', 'name=b'], 'invalid filter "name=b": unsupported operator "=" (want "==", "!=" or "~=") at position 4');
});
