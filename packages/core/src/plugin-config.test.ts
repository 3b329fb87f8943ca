import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from '@berth/plugin-api';
import { resolvePluginConfig } from './plugin-config.js';

const schema = {
  defaults: {
    root: '/var/lib/x',
    size: 1,
    sync: true,
    names: ['a'],
    ports: [1, 2],
    anything: [] as string[],
    nested: { deeper: { level: 3 }, mode: 'fast' },
  },
};

const refuses = (raw: unknown, message: RegExp) =>
  assert.throws(
    () => resolvePluginConfig('io.berth.test.v1.p', schema, raw),
    (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message),
    message.source,
  );

test('no table gives a copy of the defaults', () => {
  const config = resolvePluginConfig('io.berth.test.v1.p', schema, undefined);
  assert.deepEqual(config, schema.defaults);
  assert.notEqual(config.nested, schema.defaults.nested);
  assert.deepEqual(resolvePluginConfig('p', undefined, undefined), {});
});

test('values override defaults, nested tables merge key by key', () => {
  const config = resolvePluginConfig('io.berth.test.v1.p', schema, {
    size: 5,
    names: ['b', 'c'],
    ports: [],
    anything: ['x'],
    nested: { deeper: { level: 4 } },
  });
  assert.deepEqual(config, {
    root: '/var/lib/x',
    size: 5,
    sync: true,
    names: ['b', 'c'],
    ports: [],
    anything: ['x'],
    nested: { deeper: { level: 4 }, mode: 'fast' },
  });
  assert.deepEqual(schema.defaults.nested, { deeper: { level: 3 }, mode: 'fast' }, 'defaults untouched');
});

test('unknown keys are refused with their full path and the known keys', () => {
  refuses({ sise: 2 }, /^plugins\."io\.berth\.test\.v1\.p"\.sise: unknown key \(known: root, size, sync, names, ports, anything, nested\)/);
  refuses({ nested: { deeper: { lvl: 1 } } }, /^plugins\."io\.berth\.test\.v1\.p"\.nested\.deeper\.lvl: unknown key/);
  refuses(JSON.parse('{"__proto__": {"x": 1}}'), /__proto__: unknown key/);
  assert.throws(() => resolvePluginConfig('p', undefined, { any: 1 }), /takes no configuration/);
});

test('values of the wrong type are refused with their path', () => {
  refuses({ size: '5' }, /\.size: expected a number, got string/);
  refuses({ sync: 'true' }, /\.sync: expected a boolean, got string/);
  refuses({ root: 1 }, /\.root: expected a string, got number/);
  refuses({ names: 'a' }, /\.names: expected an array, got string/);
  refuses({ names: [1] }, /\.names: expected an array of strings, got array/);
  refuses({ ports: ['80'] }, /\.ports: expected an array of numbers/);
  refuses({ anything: [{}] }, /\.anything: expected an array of strings or numbers/);
  refuses({ nested: 'x' }, /\.nested: expected a table/);
  refuses({ nested: { deeper: [] } }, /\.nested\.deeper: expected a table/);
  refuses({ root: new Date(0) }, /\.root: expected a string, got date/);
  refuses('x', /^plugins\."io\.berth\.test\.v1\.p": expected a table/);
});

test('validate runs on the merged config', () => {
  const seen: unknown[] = [];
  const validated = {
    defaults: { size: 1 },
    validate: (c: { size: number }) => {
      seen.push(c);
      if (c.size > 10) throw new InvalidArgumentError('size: at most 10');
    },
  };
  assert.deepEqual(resolvePluginConfig('p', validated, { size: 2 }), { size: 2 });
  assert.deepEqual(seen, [{ size: 2 }]);
  assert.throws(() => resolvePluginConfig('p', validated, { size: 11 }), /at most 10/);
});

test('an open table (`*` template) takes any key, each checked against the template', () => {
  const open = {
    defaults: {
      flag: false,
      runtimes: { '*': { binary: '', options: { Root: '', Systemd: false } }, fixed: { binary: 'x', options: { Root: '', Systemd: false } } },
    },
  };
  assert.deepEqual(resolvePluginConfig('p', open, undefined), {
    flag: false,
    runtimes: { fixed: { binary: 'x', options: { Root: '', Systemd: false } } },
  });
  assert.deepEqual(resolvePluginConfig('p', open, { runtimes: { 'io.x.v1': { binary: '/bin/x' }, fixed: { binary: 'y' } } }), {
    flag: false,
    runtimes: {
      fixed: { binary: 'y', options: { Root: '', Systemd: false } },
      'io.x.v1': { binary: '/bin/x', options: { Root: '', Systemd: false } },
    },
  });
  assert.throws(
    () => resolvePluginConfig('p', open, { runtimes: { 'io.x.v1': { binary: 1 } } }),
    /plugins\."p"\.runtimes\.io\.x\.v1\.binary: expected a string, got number/,
  );
  assert.throws(
    () => resolvePluginConfig('p', open, { runtimes: { 'io.x.v1': { options: { Nope: 1 } } } }),
    /runtimes\.io\.x\.v1\.options\.Nope: unknown key \(known: Root, Systemd\)/,
  );
  const odd = resolvePluginConfig('p', open, { runtimes: JSON.parse('{"__proto__": {"binary": "z"}}') });
  assert.equal(Object.getPrototypeOf(odd.runtimes), Object.prototype);
  assert.deepEqual(Object.keys(odd.runtimes), ['fixed', '__proto__']);
});
