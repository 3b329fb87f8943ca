import {
  type ConfigSchema,
  type ConfigTable,
  type ConfigValue,
  InvalidArgumentError,
} from '@berth/plugin-api';

/**
 * Merge a plugin's TOML table over its defaults. The defaults are the
 * schema: unknown keys and values of the wrong type are refused.
 */
export function resolvePluginConfig<C extends ConfigTable>(
  name: string,
  schema: ConfigSchema<C> | undefined,
  raw: unknown,
): C {
  const defaults = (schema?.defaults ?? {}) as C;
  if (raw === undefined) return withoutTemplates(defaults) as C;
  const merged = mergeTable(`plugins."${name}"`, defaults, raw) as C;
  schema?.validate?.(merged);
  return merged;
}

/** A defaults table with this key is open: any key is taken, each checked against the template under it. */
export const ANY_KEY = '*';

function mergeTable(path: string, defaults: ConfigTable, raw: unknown): ConfigTable {
  if (!isTable(raw)) throw new InvalidArgumentError(`${path}: expected a table`);
  const out: Record<string, ConfigValue> = withoutTemplates(defaults) as Record<string, ConfigValue>;
  const template = Object.hasOwn(defaults, ANY_KEY) ? (defaults[ANY_KEY] as ConfigValue) : undefined;
  for (const [key, value] of Object.entries(raw)) {
    const keyPath = `${path}.${key}`;
    if (template !== undefined && !Object.hasOwn(defaults, key)) {
      // defineProperty: a key such as `__proto__` stays a plain key.
      Object.defineProperty(out, key, { value: mergeValue(keyPath, template, value), enumerable: true, writable: true, configurable: true });
      continue;
    }
    if (!Object.hasOwn(defaults, key)) {
      const known = Object.keys(defaults);
      throw new InvalidArgumentError(
        `${keyPath}: unknown key${known.length ? ` (known: ${known.join(', ')})` : ' (this plugin takes no configuration)'}`,
      );
    }
    out[key] = mergeValue(keyPath, defaults[key] as ConfigValue, value);
  }
  return out;
}

function mergeValue(path: string, def: ConfigValue, value: unknown): ConfigValue {
  if (Array.isArray(def)) {
    if (!Array.isArray(value)) throw typeError(path, 'an array', value);
    const elem = def.length > 0 ? typeof def[0] : undefined;
    for (const item of value) {
      if (typeof item !== 'string' && typeof item !== 'number') throw typeError(path, 'an array of strings or numbers', value);
      if (elem && typeof item !== elem) throw typeError(path, `an array of ${elem}s`, value);
    }
    return value as ConfigValue;
  }
  if (isTable(def)) return mergeTable(path, def, value);
  if (typeof value !== typeof def) throw typeError(path, `a ${typeof def}`, value);
  return value as ConfigValue;
}

/** A copy of the defaults without the `*` templates of open tables. */
function withoutTemplates(table: ConfigTable): ConfigTable {
  const out: Record<string, ConfigValue> = {};
  for (const [key, value] of Object.entries(table)) {
    if (key === ANY_KEY) continue;
    out[key] = isTable(value) ? withoutTemplates(value) : structuredClone(value);
  }
  return out;
}

function isTable(v: unknown): v is ConfigTable {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function typeError(path: string, expected: string, value: unknown): InvalidArgumentError {
  const got = Array.isArray(value) ? 'array' : value instanceof Date ? 'date' : typeof value;
  return new InvalidArgumentError(`${path}: expected ${expected}, got ${got}`);
}
