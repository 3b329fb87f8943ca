import { decodeAny, fieldBool, fieldNumber, fieldString, readFields } from './wire.js';

/** containerd.runc.v1.Options, the runtime options of `io.containerd.runc.v2`, which this shim honours. */
export interface RuncOptions {
  readonly noPivotRoot: boolean;
  readonly noNewKeyring: boolean;
  readonly shimCgroup: string;
  readonly ioUid: number;
  readonly ioGid: number;
  readonly binaryName: string;
  readonly root: string;
  readonly systemdCgroup: boolean;
}

export const RUNC_OPTIONS_TYPE = 'containerd.runc.v1.Options';

/** Options of another type; a plain Error, so `start` need not load @berth/plugin-api (the service maps it to InvalidArgument). */
export class UnsupportedOptionsError extends Error {
  override readonly name = 'UnsupportedOptionsError';
}

export const DEFAULT_RUNC_OPTIONS: RuncOptions = {
  noPivotRoot: false,
  noNewKeyring: false,
  shimCgroup: '',
  ioUid: 0,
  ioGid: 0,
  binaryName: '',
  root: '',
  systemdCgroup: false,
};

/** Decodes the Options message itself (the Any's value). */
export function decodeRuncOptions(value: Uint8Array): RuncOptions {
  const f = readFields(value);
  return {
    noPivotRoot: fieldBool(f, 1),
    noNewKeyring: fieldBool(f, 2),
    shimCgroup: fieldString(f, 3),
    ioUid: fieldNumber(f, 4),
    ioGid: fieldNumber(f, 5),
    binaryName: fieldString(f, 6),
    root: fieldString(f, 7),
    systemdCgroup: fieldBool(f, 9),
  };
}

/**
 * The runc options in an Any as containerd sends them (task options, or
 * runtime options on start's stdin). No Any, or an empty one, means the
 * defaults; another message type is refused, as the stock shim refuses it.
 */
export function runcOptionsFromAny(any: { typeUrl: string; value: Uint8Array } | undefined): RuncOptions {
  if (!any || (any.typeUrl === '' && any.value.length === 0)) return DEFAULT_RUNC_OPTIONS;
  const name = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1);
  if (name !== RUNC_OPTIONS_TYPE) {
    throw new UnsupportedOptionsError(`unsupported runtime options type ${any.typeUrl}: berth's shim takes ${RUNC_OPTIONS_TYPE}`);
  }
  return decodeRuncOptions(any.value);
}

/** Options from the raw bytes of an Any (start's stdin). */
export function runcOptionsFromAnyBytes(bytes: Uint8Array): RuncOptions {
  if (bytes.length === 0) return DEFAULT_RUNC_OPTIONS;
  return runcOptionsFromAny(decodeAny(bytes));
}
