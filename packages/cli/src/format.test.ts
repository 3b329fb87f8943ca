import type { PluginInfo } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatEvent } from './commands/events.js';
import { formatPluginDetails, formatPluginTable } from './commands/plugins.js';
import { UsageError } from './exit-code.js';
import { formatLabels, formatTable, parseDuration, parseLabels } from './format.js';

describe('formatTable', () => {
  it('pads every column but the last to its widest cell', () => {
    assert.equal(formatTable(['NAME', 'LABELS'], [['a', ''], ['longer', 'x=1']]), 'NAME      LABELS\na\nlonger    x=1\n');
  });
});

describe('labels', () => {
  it('parses KEY=VALUE, an empty value, and = inside the value', () => {
    assert.deepEqual(parseLabels(['a=1', 'b=', 'c=x=y']), { a: '1', b: '', c: 'x=y' });
  });

  it('rejects an argument without a key or without = as a usage error', () => {
    assert.throws(() => parseLabels(['novalue']), UsageError);
    assert.throws(() => parseLabels(['=v']), UsageError);
  });

  it('prints labels sorted as k=v,k=v', () => {
    assert.equal(formatLabels({ b: '2', a: '1' }), 'a=1,b=2');
    assert.equal(formatLabels({}), '');
  });
});

describe('parseDuration', () => {
  it('reads Go-style durations and bare seconds', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('2h'), 7_200_000);
    assert.equal(parseDuration('10'), 10_000);
  });

  it('rejects anything else', () => {
    for (const bad of ['', 'x', '10x', 's', '1s junk', '-1s']) assert.throws(() => parseDuration(bad), UsageError, bad);
  });
});

const plugin = (status: PluginInfo['status'], extra: Partial<PluginInfo> = {}): PluginInfo => ({
  type: 'io.containerd.snapshotter.v1',
  id: 'overlayfs',
  requires: [],
  platforms: [],
  exports: {},
  capabilities: [],
  status,
  ...extra,
});

describe('plugins output', () => {
  it('shows ok, skip and error as ctr does, with - for no platform', () => {
    const table = formatPluginTable([
      plugin({ state: 'ok' }, { platforms: [{ os: 'linux', architecture: 'arm', variant: 'v7' }] }),
      plugin({ state: 'skipped', reason: 'no overlay' }, { id: 'btrfs' }),
      plugin({ state: 'error', message: 'boom' }, { id: 'native' }),
    ]);
    assert.deepEqual(table.split('\n').map((l) => l.split(/\s{2,}/)), [
      ['TYPE', 'ID', 'PLATFORMS', 'STATUS'],
      ['io.containerd.snapshotter.v1', 'overlayfs', 'linux/arm/v7', 'ok'],
      ['io.containerd.snapshotter.v1', 'btrfs', '-', 'skip'],
      ['io.containerd.snapshotter.v1', 'native', '-', 'error'],
      [''],
    ]);
  });

  it('details requires, exports and the error', () => {
    const text = formatPluginDetails(
      plugin({ state: 'error', message: 'boom' }, { requires: ['io.containerd.metadata.v1'], exports: { root: '/var/x' } }),
    );
    assert.match(text, /^Type: +io\.containerd\.snapshotter\.v1$/m);
    assert.match(text, /^Requires:\n +io\.containerd\.metadata\.v1$/m);
    assert.match(text, /^Exports:\n +root {4}\/var\/x$/m);
    assert.match(text, /^Status: +error\nError: +boom$/m);
    assert.match(formatPluginDetails(plugin({ state: 'skipped', reason: 'no overlay' })), /^Reason: +no overlay$/m);
  });
});

describe('formatEvent', () => {
  it('prints TIMESTAMP NAMESPACE TOPIC JSON, bytes as base64 for unknown types', () => {
    const timestamp = new Date('2024-05-06T07:08:09.010Z');
    assert.equal(
      formatEvent({
        timestamp,
        namespace: 'default',
        topic: '/namespaces/create',
        event: { typeUrl: 'containerd.events.NamespaceCreate', value: new Uint8Array([10]), data: { name: 'x', labels: {} } },
      }),
      '2024-05-06T07:08:09.010Z default /namespaces/create {"name":"x","labels":{}}',
    );
    assert.equal(
      formatEvent({ timestamp, namespace: 'n', topic: '/t', event: { typeUrl: 'x.Y', value: new Uint8Array([1, 2]) } }),
      '2024-05-06T07:08:09.010Z n /t {"typeUrl":"x.Y","value":"AQI="}',
    );
  });
});
