import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { appendDistributionSource, childGcLabels, childrenOf } from './manifest.js';
import { MediaType } from './media-types.js';
import { parsePlatform, platformMatches } from './platform.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;

describe('childGcLabels (as containerd’s ChildGCLabels and SetChildrenMappedLabels)', () => {
  it('labels a manifest’s config and layers', () => {
    assert.deepEqual(
      childGcLabels([
        { mediaType: MediaType.ociConfig, digest: d('c'), size: 1 },
        { mediaType: MediaType.ociLayerGzip, digest: d('1'), size: 1 },
        { mediaType: MediaType.dockerLayerGzip, digest: d('2'), size: 1 },
      ]),
      {
        'containerd.io/gc.ref.content.config': d('c'),
        'containerd.io/gc.ref.content.l.0': d('1'),
        'containerd.io/gc.ref.content.l.1': d('2'),
      },
    );
  });

  it('labels an index’s manifests m.N and other children by number', () => {
    assert.deepEqual(
      childGcLabels([
        { mediaType: MediaType.ociManifest, digest: d('a'), size: 1 },
        { mediaType: MediaType.dockerManifest, digest: d('b'), size: 1 },
        { mediaType: MediaType.ociIndex, digest: d('e'), size: 1 },
      ]),
      {
        'containerd.io/gc.ref.content.m.0': d('a'),
        'containerd.io/gc.ref.content.m.1': d('b'),
        'containerd.io/gc.ref.content.0': d('e'),
      },
    );
  });
});

describe('appendDistributionSource', () => {
  it('keeps repositories sorted and unique', () => {
    assert.equal(appendDistributionSource(undefined, 'b/c'), 'b/c');
    assert.equal(appendDistributionSource('b/c', 'a'), 'a,b/c');
    assert.equal(appendDistributionSource('a,b/c', 'b/c'), 'a,b/c');
  });
});

describe('childrenOf', () => {
  it('reads config then layers, and index entries', () => {
    const m = { schemaVersion: 2, config: { mediaType: MediaType.ociConfig, digest: d('c'), size: 2 }, layers: [{ mediaType: MediaType.ociLayerGzip, digest: d('1'), size: 3 }] };
    assert.deepEqual(
      childrenOf({ mediaType: MediaType.ociManifest, digest: d('f'), size: 0 }, Buffer.from(JSON.stringify(m))).map((c) => c.digest),
      [d('c'), d('1')],
    );
  });

  it('refuses schema 1, broken JSON and bad descriptors', () => {
    assert.throws(() => childrenOf({ mediaType: MediaType.dockerSchema1Manifest, digest: d('f'), size: 0 }, Buffer.from('{}')), /schema 1/);
    assert.throws(() => childrenOf({ mediaType: MediaType.ociManifest, digest: d('f'), size: 0 }, Buffer.from('{')), /not JSON/);
    const bad = { schemaVersion: 2, manifests: [{ mediaType: MediaType.ociManifest, digest: '../../etc/passwd', size: 1 }] };
    assert.throws(() => childrenOf({ mediaType: MediaType.ociIndex, digest: d('f'), size: 0 }, Buffer.from(JSON.stringify(bad))), /bad descriptor/);
  });
});

describe('platforms', () => {
  it('parses and normalizes', () => {
    assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(parsePlatform('linux/aarch64'), { os: 'linux', architecture: 'arm64' });
    assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' });
    assert.deepEqual(parsePlatform('linux/arm'), { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.deepEqual(parsePlatform('arm64'), { os: 'linux', architecture: 'arm64' });
    assert.throws(() => parsePlatform('linux//x'), /invalid platform/);
  });

  it('matches index entries', () => {
    assert.ok(platformMatches(parsePlatform('linux/arm64'), { os: 'linux', architecture: 'arm64', variant: 'v8' }));
    assert.ok(platformMatches(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v7' }));
    assert.ok(!platformMatches(parsePlatform('linux/arm/v6'), { os: 'linux', architecture: 'arm', variant: 'v7' }));
    assert.ok(!platformMatches(parsePlatform('linux/amd64'), { os: 'windows', architecture: 'amd64' }));
    assert.ok(!platformMatches(parsePlatform('linux/amd64'), undefined));
  });
});
