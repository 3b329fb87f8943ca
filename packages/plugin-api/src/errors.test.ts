import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AlreadyExistsError,
  type BerthError,
  CanceledError,
  DeadlineExceededError,
  errorFromGrpc,
  type ErrorKind,
  errorKindOf,
  errorMessage,
  FailedPreconditionError,
  GrpcCode,
  grpcCodeOf,
  InvalidArgumentError,
  isAlreadyExists,
  isNotFound,
  NotFoundError,
  NotImplementedError,
  OutOfRangeError,
  SkipPlugin,
  UnavailableError,
  UnknownError,
} from './errors.js';

const kinds: Array<[new (message: string) => BerthError, ErrorKind, GrpcCode]> = [
  [NotFoundError, 'not-found', GrpcCode.NOT_FOUND],
  [AlreadyExistsError, 'already-exists', GrpcCode.ALREADY_EXISTS],
  [FailedPreconditionError, 'failed-precondition', GrpcCode.FAILED_PRECONDITION],
  [InvalidArgumentError, 'invalid-argument', GrpcCode.INVALID_ARGUMENT],
  [UnavailableError, 'unavailable', GrpcCode.UNAVAILABLE],
  [NotImplementedError, 'not-implemented', GrpcCode.UNIMPLEMENTED],
  [CanceledError, 'canceled', GrpcCode.CANCELLED],
  [DeadlineExceededError, 'deadline-exceeded', GrpcCode.DEADLINE_EXCEEDED],
  [OutOfRangeError, 'out-of-range', GrpcCode.OUT_OF_RANGE],
  [UnknownError, 'unknown', GrpcCode.UNKNOWN],
];

test('gRPC status codes have the numbers of the gRPC spec', () => {
  assert.equal(GrpcCode.INVALID_ARGUMENT, 3);
  assert.equal(GrpcCode.NOT_FOUND, 5);
  assert.equal(GrpcCode.ALREADY_EXISTS, 6);
  assert.equal(GrpcCode.FAILED_PRECONDITION, 9);
  assert.equal(GrpcCode.UNIMPLEMENTED, 12);
  assert.equal(GrpcCode.UNAVAILABLE, 14);
});

for (const [ErrorClass, kind, code] of kinds) {
  test(`${ErrorClass.name}: kind ${kind} maps to gRPC code ${code} and back`, () => {
    const err = new ErrorClass('boom');
    assert.equal(err.kind, kind);
    assert.equal(err.name, ErrorClass.name);
    assert.equal(err.message, 'boom');
    assert.equal(errorKindOf(err), kind);
    assert.equal(grpcCodeOf(err), code);
    const back = errorFromGrpc(code, 'from the wire');
    assert.ok(back instanceof ErrorClass, `${code} → ${back.constructor.name}`);
    assert.equal(back.kind, kind);
    assert.equal(back.message, 'from the wire');
  });
}

test('every gRPC code survives a round trip through errorFromGrpc, or becomes UNKNOWN', () => {
  const mapped = new Set<number>(kinds.map(([, , code]) => code));
  for (const code of Object.values(GrpcCode)) {
    const back = grpcCodeOf(errorFromGrpc(code, 'x'));
    assert.equal(back, mapped.has(code) ? code : GrpcCode.UNKNOWN, `code ${code}`);
  }
});

test('errors keep their cause', () => {
  const cause = new Error('root');
  assert.equal(new NotFoundError('x', { cause }).cause, cause);
});

test('gRPC codes without a berth kind come back as UnknownError with the message', () => {
  for (const code of [GrpcCode.INTERNAL, GrpcCode.PERMISSION_DENIED, GrpcCode.DATA_LOSS, GrpcCode.UNKNOWN, 99]) {
    const err = errorFromGrpc(code, `code ${code}`);
    assert.ok(err instanceof UnknownError);
    assert.equal(err.kind, 'unknown');
    assert.equal(err.message, `code ${code}`);
  }
});

test('values that are not berth errors map to UNKNOWN', () => {
  assert.equal(grpcCodeOf(new Error('plain')), GrpcCode.UNKNOWN);
  assert.equal(grpcCodeOf('a string'), GrpcCode.UNKNOWN);
  assert.equal(grpcCodeOf(undefined), GrpcCode.UNKNOWN);
  assert.equal(errorKindOf(new Error('plain')), undefined);
  // Only Errors count: a plain object with a kind is not an error.
  assert.equal(errorKindOf({ kind: 'not-found', message: 'x' }), undefined);
  // A kind that is not one of berth's does not count either.
  assert.equal(errorKindOf(Object.assign(new Error('x'), { kind: 'exploded' })), undefined);
  assert.equal(errorKindOf(Object.assign(new Error('x'), { kind: 'toString' })), undefined);
  assert.equal(grpcCodeOf(Object.assign(new Error('x'), { kind: 'exploded' })), GrpcCode.UNKNOWN);
});

test('errorKindOf recognises errors from another copy of the package by shape', () => {
  // What a plugin bundling its own @berth/plugin-api would throw: not our class, same shape.
  class NotFoundError extends Error {
    readonly kind = 'not-found';
  }
  const foreign = new NotFoundError('image "x": not found');
  assert.equal(errorKindOf(foreign), 'not-found');
  assert.equal(grpcCodeOf(foreign), GrpcCode.NOT_FOUND);
  assert.ok(isNotFound(foreign));
  assert.ok(!isAlreadyExists(foreign));

  const exists = Object.assign(new Error('dup'), { kind: 'already-exists' });
  assert.ok(isAlreadyExists(exists));
  assert.ok(!isNotFound(exists));
  assert.equal(grpcCodeOf(exists), GrpcCode.ALREADY_EXISTS);
});

test('SkipPlugin carries its reason and says "skip plugin"', () => {
  const skip = new SkipPlugin('no overlayfs');
  assert.ok(skip instanceof Error);
  assert.equal(skip.name, 'SkipPlugin');
  assert.equal(skip.reason, 'no overlayfs');
  assert.match(skip.message, /skip plugin/);
  assert.match(skip.message, /no overlayfs/);
  // A skip is not an error kind: it never reaches a client as one.
  assert.equal(errorKindOf(skip), undefined);
});

test('errorMessage reads Errors and stringifies the rest', () => {
  assert.equal(errorMessage(new InvalidArgumentError('bad')), 'bad');
  assert.equal(errorMessage('text'), 'text');
  assert.equal(errorMessage(42), '42');
});
