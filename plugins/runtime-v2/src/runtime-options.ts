import { encodeMessage, protoRoot } from '@berth/api/protocol';
import type { AnyValue } from '@berth/plugin-api';

export const RUNC_OPTIONS_TYPE = 'containerd.runc.v1.Options';

/** containerd.runc.v1.Options as containerd's TOML names them (`[…runtimes.<name>.options]`). */
export const RUNC_OPTION_DEFAULTS = {
  BinaryName: '',
  Root: '',
  SystemdCgroup: false,
  NoPivotRoot: false,
  NoNewKeyring: false,
  ShimCgroup: '',
  IoUid: 0,
  IoGid: 0,
  CriuPath: '',
  CriuImagePath: '',
  CriuWorkPath: '',
};
export type RuncOptionsConfig = typeof RUNC_OPTION_DEFAULTS;

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);

/** The options a config table sets, as a containerd.runc.v1.Options message; undefined when it sets none. */
export function encodeRuncOptions(config: Partial<RuncOptionsConfig> | undefined): Uint8Array | undefined {
  const fields = Object.fromEntries(
    Object.entries(config ?? {})
      .filter(([key, value]) => Object.hasOwn(RUNC_OPTION_DEFAULTS, key) && value !== RUNC_OPTION_DEFAULTS[key as keyof RuncOptionsConfig])
      .map(([key, value]) => [lowerFirst(key), value]),
  );
  if (Object.keys(fields).length === 0) return undefined;
  return encodeMessage(protoRoot().lookupType(RUNC_OPTIONS_TYPE), fields);
}

const isRuncOptions = (typeUrl: string) => typeUrl === RUNC_OPTIONS_TYPE || typeUrl.endsWith(`/${RUNC_OPTIONS_TYPE}`);

/**
 * The options a shim gets: the request's (or container's), over the
 * config's defaults. For containerd.runc.v1.Options the two messages merge
 * as protobuf does (concatenated, the later field winning), so a client's
 * empty Options (what `ctr run` sends) keeps the configured BinaryName.
 */
export function mergeRuntimeOptions(configured: Uint8Array | undefined, requested: AnyValue | undefined): AnyValue | undefined {
  if (!configured) return requested?.typeUrl ? requested : undefined;
  if (!requested?.typeUrl) return { typeUrl: RUNC_OPTIONS_TYPE, value: configured };
  if (!isRuncOptions(requested.typeUrl)) return requested;
  const value = new Uint8Array(configured.length + requested.value.length);
  value.set(configured, 0);
  value.set(requested.value, configured.length);
  return { typeUrl: requested.typeUrl, value };
}

/** The bytes of a google.protobuf.Any, as shims read their options from stdin. */
export function encodeAny(any: AnyValue): Uint8Array {
  return encodeMessage(protoRoot().lookupType('google.protobuf.Any'), { type_url: any.typeUrl, value: any.value });
}
