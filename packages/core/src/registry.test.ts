import 'reflect-metadata';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AlreadyExistsError,
  type ConfigTable,
  definePlugin,
  InvalidArgumentError,
  type PluginContext,
  type PluginDefinition,
  type PluginInfo,
  PluginRegistryView,
  SkipPlugin,
  token,
} from '@berth/plugin-api';
import { inject, injectable } from 'inversify';
import { silentLogger } from './logger.js';
import { PluginRegistry, type RegistryOptions } from './registry.js';

function newRegistry(opts: Partial<RegistryOptions> = {}): PluginRegistry {
  return new PluginRegistry({ root: '/berth-test/root', state: '/berth-test/state', log: silentLogger, ...opts });
}

type Spec = Omit<PluginDefinition<ConfigTable, unknown>, 'apiVersion' | 'type' | 'init'> & {
  type?: string;
  init?: (ctx: PluginContext<ConfigTable>) => unknown;
};

/** A plugin that records its init in `log` and provides its id unless told otherwise. */
function plugin(id: string, log: string[], spec: Omit<Spec, 'id'> = {}): PluginDefinition<ConfigTable, unknown> {
  return definePlugin<ConfigTable, unknown>({
    type: 'io.berth.test.v1',
    id,
    ...spec,
    init: (ctx) => {
      log.push(id);
      return spec.init ? spec.init(ctx) : id;
    },
  });
}

function info(registry: PluginRegistry, id: string): PluginInfo {
  const found = registry.list().find((p) => p.id === id);
  assert.ok(found, `plugin ${id} is listed`);
  return found;
}

function statusOf(registry: PluginRegistry, id: string): PluginInfo['status'] {
  return info(registry, id).status;
}

function errorOf(registry: PluginRegistry, id: string): string {
  const status = statusOf(registry, id);
  assert.equal(status.state, 'error', `${id} failed: ${JSON.stringify(status)}`);
  return status.state === 'error' ? status.message : '';
}

const A = token<string>('test.registry.A');
const B = token<string>('test.registry.B');
const C = token<string>('test.registry.C');
const D = token<string>('test.registry.D');

test('register refuses definitions that can never load', () => {
  const registry = newRegistry();
  const ok = plugin('ok', []);
  assert.throws(() => registry.register({ ...ok, type: '' }), InvalidArgumentError);
  assert.throws(() => registry.register({ ...ok, id: '' }), InvalidArgumentError);
  assert.throws(() => registry.register({ ...ok, init: undefined } as never), /no init function/);
  assert.throws(() => registry.register(undefined as never, 'pkg-x'), /pkg-x/);
  assert.throws(() => registry.register({ ...ok, provides: A, requires: [A] }), /requires test.registry.A, which it provides itself/);
  assert.throws(() => registry.register({ ...ok, provides: A, optional: [A] }), InvalidArgumentError);
  registry.register(ok);
  assert.throws(() => registry.register(plugin('ok', [])), AlreadyExistsError);
  // Same id under another type is another address.
  registry.register(plugin('ok', [], { type: 'io.berth.other.v1' }));
  assert.equal(registry.list().length, 2);
});

test('plugins initialise after what they require, whatever the registration order', async () => {
  const log: string[] = [];
  const registry = newRegistry();
  // Chain: c requires B, b requires A.
  registry.register(plugin('c', log, { requires: [B] }));
  registry.register(plugin('b', log, { requires: [A], provides: B }));
  registry.register(plugin('a', log, { provides: A }));
  // Diamond: top requires C and D, both require A2, which bottom provides.
  const A2 = token<string>('test.registry.A2');
  registry.register(plugin('top', log, { requires: [C, D] }));
  registry.register(plugin('left', log, { requires: [A2], provides: C }));
  registry.register(plugin('right', log, { requires: [A2], provides: D }));
  registry.register(plugin('bottom', log, { provides: A2 }));
  await registry.initAll();

  const before = (x: string, y: string) => assert.ok(log.indexOf(x) < log.indexOf(y), `${x} before ${y}: ${log}`);
  assert.equal(log.length, 7);
  before('a', 'b');
  before('b', 'c');
  before('bottom', 'left');
  before('bottom', 'right');
  before('left', 'top');
  before('right', 'top');
  for (const p of registry.list()) assert.deepEqual(p.status, { state: 'ok' }, p.id);
});

test('required values reach init through ctx.get', async () => {
  const registry = newRegistry();
  let seen: string | undefined;
  registry.register(plugin('b', [], { requires: [A], init: (ctx) => (seen = ctx.get(A)) }));
  registry.register(plugin('a', [], { provides: A, init: () => 'value of a' }));
  await registry.initAll();
  assert.equal(seen, 'value of a');
  assert.equal(registry.lookup(A), 'value of a');
});

test('optional dependencies are ordered first but not required', async () => {
  const log: string[] = [];
  const registry = newRegistry();
  let got: Array<string | undefined> = [];
  registry.register(plugin('user', log, { optional: [A, B], init: (ctx) => (got = [ctx.tryGet(A), ctx.tryGet(B)]) }));
  registry.register(plugin('a', log, { provides: A }));
  await registry.initAll();
  assert.deepEqual(log, ['a', 'user']);
  assert.deepEqual(got, ['a', undefined]);
  assert.deepEqual(statusOf(registry, 'user'), { state: 'ok' });
});

test('a dependency cycle fails every plugin on it and no other', async () => {
  const log: string[] = [];
  const registry = newRegistry();
  registry.register(plugin('x', log, { requires: [C], provides: A }));
  registry.register(plugin('y', log, { requires: [A], provides: B }));
  registry.register(plugin('z', log, { optional: [B], provides: C }));
  registry.register(plugin('free', log, { provides: D }));
  registry.register(plugin('self-loop-free', log, { requires: [D] }));
  registry.register(plugin('after-cycle', log, { requires: [B] }));
  await registry.initAll();

  for (const id of ['x', 'y', 'z']) {
    const message = errorOf(registry, id);
    assert.match(message, /dependency cycle/);
    for (const member of ['x', 'y', 'z']) assert.ok(message.includes(`io.berth.test.v1.${member}`), message);
  }
  assert.deepEqual(log, ['free', 'self-loop-free']);
  assert.deepEqual(statusOf(registry, 'free'), { state: 'ok' });
  assert.deepEqual(statusOf(registry, 'self-loop-free'), { state: 'ok' });
  // Depending on a plugin of the cycle fails too, naming what is missing.
  assert.match(errorOf(registry, 'after-cycle'), /test\.registry\.B/);
});

test('a plugin whose required provider failed fails, naming the token', async () => {
  const log: string[] = [];
  const registry = newRegistry();
  registry.register(plugin('user', log, { requires: [A, D] }));
  registry.register(plugin('broken', log, { provides: A, init: () => {
    throw new Error('disk on fire');
  } }));
  registry.register(plugin('d', log, { provides: D }));
  await registry.initAll();
  assert.equal(errorOf(registry, 'broken'), 'disk on fire');
  const message = errorOf(registry, 'user');
  assert.match(message, /test\.registry\.A/);
  assert.doesNotMatch(message, /test\.registry\.D/);
  assert.ok(!log.includes('user'), 'init never ran');
  assert.equal(registry.lookup(A), undefined);
});

test('a required token nobody provides fails the plugin', async () => {
  const registry = newRegistry();
  registry.register(plugin('lonely', [], { requires: [A] }));
  await registry.initAll();
  assert.match(errorOf(registry, 'lonely'), /test\.registry\.A.*no loaded plugin provides/);
});

test('SkipPlugin marks the plugin skipped with its reason', async () => {
  const registry = newRegistry();
  registry.register(plugin('skipper', [], { provides: A, init: () => {
    throw new SkipPlugin('no overlayfs here');
  } }));
  // From another copy of plugin-api: same name, not our class.
  registry.register(plugin('foreign-skipper', [], { init: () => {
    throw Object.assign(new Error('skip plugin: no gpu'), { name: 'SkipPlugin', reason: 'no gpu' });
  } }));
  registry.register(plugin('user', [], { requires: [A] }));
  await registry.initAll();
  assert.deepEqual(statusOf(registry, 'skipper'), { state: 'skipped', reason: 'no overlayfs here' });
  assert.deepEqual(statusOf(registry, 'foreign-skipper'), { state: 'skipped', reason: 'no gpu' });
  assert.equal(statusOf(registry, 'user').state, 'error');
});

test('an init that throws fails only that plugin', async () => {
  const registry = newRegistry();
  registry.register(plugin('before', []));
  registry.register(plugin('thrower', [], { init: async () => {
    throw new Error('init exploded');
  } }));
  registry.register(plugin('string-thrower', [], { init: () => {
    throw 'not an error';
  } }));
  registry.register(plugin('after', []));
  await registry.initAll();
  assert.deepEqual(statusOf(registry, 'thrower'), { state: 'error', message: 'init exploded' });
  assert.deepEqual(statusOf(registry, 'string-thrower'), { state: 'error', message: 'not an error' });
  assert.deepEqual(statusOf(registry, 'before'), { state: 'ok' });
  assert.deepEqual(statusOf(registry, 'after'), { state: 'ok' });
});

test('disabled plugins neither initialise nor show in the list', async () => {
  const log: string[] = [];
  const registry = newRegistry({ disabled: ['io.berth.test.v1.off'] });
  registry.register(plugin('off', log, { provides: A }));
  registry.register(plugin('on', log, { optional: [A], init: (ctx) => ctx.tryGet(A) ?? 'none' }));
  registry.register(plugin('needs-off', log, { requires: [A] }));
  await registry.initAll();
  assert.deepEqual(log, ['on']);
  assert.deepEqual(registry.list().map((p) => p.id).sort(), ['needs-off', 'on']);
  assert.equal(statusOf(registry, 'needs-off').state, 'error');
});

test('ctx.get and friends refuse tokens the plugin did not declare', async () => {
  const registry = newRegistry();
  const thrown: string[] = [];
  registry.register(plugin('a', [], { provides: A }));
  registry.register(plugin('sneaky', [], { requires: [B], init: (ctx) => {
    for (const use of [() => ctx.get(A), () => ctx.tryGet(A), () => ctx.getAll(A)]) {
      try {
        use();
      } catch (err) {
        thrown.push((err as Error).message);
      }
    }
    return ctx.get(A);
  } }));
  registry.register(plugin('b', [], { provides: B }));
  registry.register(plugin('declared', [], { requires: [A] , init: (ctx) => ctx.get(A) }));
  await registry.initAll();
  assert.equal(thrown.length, 3);
  for (const m of thrown) assert.match(m, /sneaky uses test\.registry\.A without declaring it/);
  assert.match(errorOf(registry, 'sneaky'), /without declaring/);
  assert.deepEqual(statusOf(registry, 'declared'), { state: 'ok' });
});

test('a multi token gathers every provider by plugin id', async () => {
  const Service = token<string>('test.registry.Service', { multi: true });
  const registry = newRegistry();
  let all: ReadonlyMap<string, string> | undefined;
  let single: unknown;
  registry.register(plugin('consumer', [], { requires: [Service], init: (ctx) => {
    all = new Map(ctx.getAll(Service));
    try {
      single = ctx.get(Service);
    } catch (err) {
      single = err;
    }
  } }));
  registry.register(plugin('one', [], { provides: Service, init: () => 'first' }));
  registry.register(plugin('two', [], { provides: Service, init: () => 'second' }));
  registry.register(plugin('three', [], { type: 'io.berth.other.v1', provides: Service, init: () => 'third' }));
  await registry.initAll();
  assert.deepEqual(all, new Map([['one', 'first'], ['two', 'second'], ['three', 'third']]));
  assert.match(String(single), /several providers/);
  assert.deepEqual(
    registry.providers(Service).map((p) => [p.address, p.value]),
    [
      ['io.berth.test.v1.one', 'first'],
      ['io.berth.test.v1.two', 'second'],
      ['io.berth.other.v1.three', 'third'],
    ],
  );
});

test('a multi token with no provider gives an empty map', async () => {
  const Service = token<string>('test.registry.EmptyService', { multi: true });
  const registry = newRegistry();
  let size = -1;
  registry.register(plugin('consumer', [], { optional: [Service], init: (ctx) => (size = ctx.getAll(Service).size) }));
  await registry.initAll();
  assert.equal(size, 0);
});

test('a single token provided twice fails the second provider', async () => {
  const registry = newRegistry();
  registry.register(plugin('first', [], { provides: A, init: () => 'first' }));
  registry.register(plugin('second', [], { provides: A, init: () => 'second' }));
  registry.register(plugin('user', [], { requires: [A], init: (ctx) => ctx.get(A) }));
  await registry.initAll();
  assert.deepEqual(statusOf(registry, 'first'), { state: 'ok' });
  assert.match(errorOf(registry, 'second'), /test\.registry\.A is already provided by first/);
  assert.deepEqual(statusOf(registry, 'user'), { state: 'ok' });
  assert.equal(registry.lookup(A), 'first');
  assert.equal(registry.container.get(A.key), 'first');
  assert.deepEqual(registry.providers(A).map((p) => p.address), ['io.berth.test.v1.first']);
});

test('config: defaults, overrides and validation', async () => {
  const defaults = { size: 10, name: 'x', nested: { flag: false }, list: ['a'] };
  const seen = new Map<string, ConfigTable>();
  const configured = (id: string) =>
    definePlugin<typeof defaults>({
      type: 'io.berth.test.v1',
      id,
      config: { defaults },
      init: (ctx) => {
        seen.set(id, ctx.config);
      },
    });
  const registry = newRegistry({
    configs: {
      'io.berth.test.v1.override': { size: 20, nested: { flag: true } },
      'io.berth.test.v1.unknown': { sizee: 1 },
      'io.berth.test.v1.wrong-type': { nested: { flag: 'yes' } },
      'io.berth.test.v1.not-table': 'oops',
    },
  });
  for (const id of ['plain', 'override', 'unknown', 'wrong-type', 'not-table']) registry.register(configured(id));
  await registry.initAll();

  assert.deepEqual(seen.get('plain'), defaults);
  assert.notEqual(seen.get('plain'), defaults, 'a copy, so a plugin cannot change the defaults');
  assert.deepEqual(seen.get('override'), { size: 20, name: 'x', nested: { flag: true }, list: ['a'] });
  assert.match(errorOf(registry, 'unknown'), /plugins\."io\.berth\.test\.v1\.unknown"\.sizee: unknown key/);
  assert.match(errorOf(registry, 'wrong-type'), /plugins\."io\.berth\.test\.v1\.wrong-type"\.nested\.flag: expected a boolean, got string/);
  assert.match(errorOf(registry, 'not-table'), /expected a table/);
  assert.equal(seen.has('unknown'), false);
  assert.deepEqual(defaults, { size: 10, name: 'x', nested: { flag: false }, list: ['a'] });
});

test('config validate hook failures fail the plugin', async () => {
  const registry = newRegistry({ configs: { 'io.berth.test.v1.v': { size: -1 } } });
  registry.register(
    definePlugin<{ size: number }>({
      type: 'io.berth.test.v1',
      id: 'v',
      config: {
        defaults: { size: 1 },
        validate: (c) => {
          if (c.size < 0) throw new InvalidArgumentError('size must not be negative');
        },
      },
      init: () => {},
    }),
  );
  await registry.initAll();
  assert.equal(errorOf(registry, 'v'), 'size must not be negative');
});

test('context carries type, id and per-plugin root and state paths', async () => {
  const registry = newRegistry();
  let ctx: PluginContext<ConfigTable> | undefined;
  registry.register(plugin('where', [], { init: (c) => (ctx = c) }));
  await registry.initAll();
  assert.equal(ctx?.type, 'io.berth.test.v1');
  assert.equal(ctx?.id, 'where');
  assert.equal(ctx?.root, '/berth-test/root/io.berth.test.v1.where');
  assert.equal(ctx?.state, '/berth-test/state/io.berth.test.v1.where');
});

test('exports and capabilities show in list()', async () => {
  const registry = newRegistry();
  registry.register(
    plugin('exporter', [], {
      capabilities: ['remap-ids'],
      platforms: [{ os: 'linux', architecture: 'amd64' }],
      init: (ctx) => {
        ctx.export('root', '/var/lib/x');
        ctx.export('answer', '42');
      },
    }),
    '@acme/berth-exporter',
  );
  await registry.initAll();
  const p = info(registry, 'exporter');
  assert.deepEqual(p.exports, { root: '/var/lib/x', answer: '42' });
  assert.deepEqual(p.capabilities, ['remap-ids']);
  assert.deepEqual(p.platforms, [{ os: 'linux', architecture: 'amd64' }]);
  assert.equal(p.package, '@acme/berth-exporter');
});

test('close() runs closers in reverse init order and survives a failing one', async () => {
  const registry = newRegistry();
  const closed: string[] = [];
  registry.register(plugin('third', [], { requires: [B], init: (ctx) => ctx.onClose(() => void closed.push('third')) }));
  registry.register(plugin('second', [], { requires: [A], provides: B, init: (ctx) => {
    ctx.onClose(async () => {
      closed.push('second');
      throw new Error('close failed');
    });
    return 'b';
  } }));
  registry.register(plugin('first', [], { provides: A, init: (ctx) => {
    ctx.onClose(() => void closed.push('first'));
    return 'a';
  } }));
  await registry.initAll();
  await registry.close();
  assert.deepEqual(closed, ['third', 'second', 'first']);
  // Closers run once.
  await registry.close();
  assert.equal(closed.length, 3);
});

test('preset tokens are available to plugins that require them', async () => {
  const registry = newRegistry();
  registry.preset(PluginRegistryView, registry);
  let view: PluginRegistryView | undefined;
  registry.register(plugin('introspect', [], { requires: [PluginRegistryView], init: (ctx) => (view = ctx.get(PluginRegistryView)) }));
  await registry.initAll();
  assert.equal(view, registry);
  assert.equal(registry.container.get(PluginRegistryView.key), registry);
  // A token no plugin provides shows by its name in requires.
  assert.deepEqual(info(registry, 'introspect').requires, ['PluginRegistryView']);
});

test('list() shows the types of the plugins that provide what a plugin requires', async () => {
  const registry = newRegistry();
  registry.register(plugin('meta', [], { type: 'io.containerd.metadata.v1', provides: A }));
  registry.register(plugin('events', [], { type: 'io.containerd.event.v1', provides: B }));
  registry.register(plugin('svc', [], { type: 'io.containerd.service.v1', requires: [A, B] }));
  registry.register(plugin('svc2', [], { type: 'io.containerd.service.v1', provides: C }));
  registry.register(plugin('svc3', [], { type: 'io.containerd.service.v1', provides: D }));
  registry.register(plugin('grpc', [], { type: 'io.containerd.grpc.v1', requires: [C, D] }));
  await registry.initAll();
  assert.deepEqual(info(registry, 'svc').requires, ['io.containerd.metadata.v1', 'io.containerd.event.v1']);
  // Duplicates collapse, as in containerd.
  assert.deepEqual(info(registry, 'grpc').requires, ['io.containerd.service.v1']);
  assert.deepEqual(info(registry, 'meta').requires, []);
});

test('recordFailure lists a package that could not load as an error', () => {
  const registry = newRegistry();
  registry.recordFailure('@acme/broken', 'cannot find module', '@acme/broken');
  const [p] = registry.list();
  assert.equal(p?.type, 'io.berth.package.v1');
  assert.equal(p?.id, '@acme/broken');
  assert.deepEqual(p?.status, { state: 'error', message: 'cannot find module' });
  assert.equal(p?.package, '@acme/broken');
});

test('fail() marks a loaded plugin as failed', async () => {
  const registry = newRegistry();
  registry.register(plugin('served', []));
  await registry.initAll();
  registry.fail('io.berth.test.v1.served', 'address in use');
  assert.deepEqual(statusOf(registry, 'served'), { state: 'error', message: 'address in use' });
});

const Greeting = token<string>('test.registry.Greeting');

@injectable()
class Greeter {
  constructor(@inject(Greeting.key) private readonly greeting: string) {}
  greet(name: string): string {
    return `${this.greeting}, ${name}`;
  }
}

test('a plugin\'s child container resolves bindings of the root container', async () => {
  const registry = newRegistry();
  let greeter: Greeter | undefined;
  registry.register(plugin('greeting', [], { provides: Greeting, init: () => 'hello' }));
  registry.register(
    plugin('greeter', [], {
      requires: [Greeting],
      init: (ctx) => {
        ctx.container.bind(Greeter).toSelf();
        greeter = ctx.container.get(Greeter);
        return greeter;
      },
    }),
  );
  registry.register(
    plugin('other', [], {
      init: (ctx) => {
        // Each plugin has its own child: another plugin's bindings are not visible.
        assert.equal(ctx.container.isBound(Greeter), false);
        assert.equal(ctx.container.isBound(Greeting.key), true);
      },
    }),
  );
  await registry.initAll();
  assert.equal(greeter?.greet('berth'), 'hello, berth');
  for (const p of registry.list()) assert.deepEqual(p.status, { state: 'ok' }, p.id);
  // Bindings made in a child stay out of the root.
  assert.equal(registry.container.isBound(Greeter), false);
});
