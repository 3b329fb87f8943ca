/**
 * Berth's error kinds. Every layer throws these; only the edge (gRPC / ttrpc
 * adapters and the client) translates them, through `grpcCodeOf` and
 * `errorFromGrpc` below — the one mapping table in berth.
 */

/** gRPC status codes (numbers fixed by the gRPC spec). */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcCode = (typeof GrpcCode)[keyof typeof GrpcCode];

export abstract class BerthError extends Error {
  abstract readonly kind: ErrorKind;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export type ErrorKind =
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'invalid-argument'
  | 'unavailable'
  | 'not-implemented'
  | 'canceled'
  | 'deadline-exceeded'
  | 'out-of-range'
  | 'unknown';

export class NotFoundError extends BerthError {
  readonly kind = 'not-found';
}
export class AlreadyExistsError extends BerthError {
  readonly kind = 'already-exists';
}
export class FailedPreconditionError extends BerthError {
  readonly kind = 'failed-precondition';
}
export class InvalidArgumentError extends BerthError {
  readonly kind = 'invalid-argument';
}
export class UnavailableError extends BerthError {
  readonly kind = 'unavailable';
}
export class NotImplementedError extends BerthError {
  readonly kind = 'not-implemented';
}
export class CanceledError extends BerthError {
  readonly kind = 'canceled';
}
export class DeadlineExceededError extends BerthError {
  readonly kind = 'deadline-exceeded';
}
export class OutOfRangeError extends BerthError {
  readonly kind = 'out-of-range';
}
export class UnknownError extends BerthError {
  readonly kind = 'unknown';
}

/**
 * Thrown from a plugin's init when the plugin does not apply to this host
 * (no overlayfs, no GPU, …). The message contains "skip plugin" because that
 * is how `ctr plugins ls` tells a skip from an error.
 */
export class SkipPlugin extends Error {
  constructor(readonly reason: string) {
    super(`skip plugin: ${reason}`);
    this.name = 'SkipPlugin';
  }
}

const kindToCode: Record<ErrorKind, GrpcCode> = {
  'not-found': GrpcCode.NOT_FOUND,
  'already-exists': GrpcCode.ALREADY_EXISTS,
  'failed-precondition': GrpcCode.FAILED_PRECONDITION,
  'invalid-argument': GrpcCode.INVALID_ARGUMENT,
  unavailable: GrpcCode.UNAVAILABLE,
  'not-implemented': GrpcCode.UNIMPLEMENTED,
  canceled: GrpcCode.CANCELLED,
  'deadline-exceeded': GrpcCode.DEADLINE_EXCEEDED,
  'out-of-range': GrpcCode.OUT_OF_RANGE,
  unknown: GrpcCode.UNKNOWN,
};

const codeToError: Partial<Record<GrpcCode, new (message: string) => BerthError>> = {
  [GrpcCode.NOT_FOUND]: NotFoundError,
  [GrpcCode.ALREADY_EXISTS]: AlreadyExistsError,
  [GrpcCode.FAILED_PRECONDITION]: FailedPreconditionError,
  [GrpcCode.INVALID_ARGUMENT]: InvalidArgumentError,
  [GrpcCode.UNAVAILABLE]: UnavailableError,
  [GrpcCode.UNIMPLEMENTED]: NotImplementedError,
  [GrpcCode.CANCELLED]: CanceledError,
  [GrpcCode.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [GrpcCode.OUT_OF_RANGE]: OutOfRangeError,
};

/** The gRPC code for any thrown value; unrecognised errors are UNKNOWN. */
export function grpcCodeOf(err: unknown): GrpcCode {
  const kind = errorKindOf(err);
  return kind ? kindToCode[kind] : GrpcCode.UNKNOWN;
}

/**
 * The kind of a berth error. Checked by shape, not `instanceof`, so errors
 * from a third-party plugin that bundles its own copy of this package count.
 */
export function errorKindOf(err: unknown): ErrorKind | undefined {
  if (!(err instanceof Error)) return undefined;
  const kind = (err as { kind?: unknown }).kind;
  return typeof kind === 'string' && Object.hasOwn(kindToCode, kind) ? (kind as ErrorKind) : undefined;
}

/** The berth error for a gRPC status received by a client. */
export function errorFromGrpc(code: number, message: string): BerthError {
  const ErrorClass = codeToError[code as GrpcCode] ?? UnknownError;
  return new ErrorClass(message);
}

export function isNotFound(err: unknown): err is NotFoundError {
  return errorKindOf(err) === 'not-found';
}
export function isAlreadyExists(err: unknown): err is AlreadyExistsError {
  return errorKindOf(err) === 'already-exists';
}
export function isNotImplemented(err: unknown): err is NotImplementedError {
  return errorKindOf(err) === 'not-implemented';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
