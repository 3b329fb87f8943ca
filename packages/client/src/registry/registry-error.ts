import { BerthError, type ErrorKind, FailedPreconditionError } from '@berth/plugin-api';

/** One entry of a registry's `{"errors": [...]}` body. */
export interface RegistryErrorDetail {
  readonly code: string;
  readonly message: string;
}

/**
 * A registry refused or failed a request, or could not be reached. Never
 * `unavailable`: to berth's CLI that kind means the daemon is unreachable.
 */
export class RegistryError extends BerthError {
  readonly kind: ErrorKind;

  constructor(
    message: string,
    /** HTTP status, absent when no response came. */
    readonly status?: number,
    readonly details: readonly RegistryErrorDetail[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.kind =
      status === 404 ? 'not-found' : status === 401 || status === 403 ? 'failed-precondition' : status === 400 ? 'invalid-argument' : 'unknown';
  }

  /** A network failure or a 5xx/429: worth trying again. */
  get retryable(): boolean {
    return this.status === undefined || this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

/** Bytes from the registry do not hash to the digest that named them. Nothing was committed. */
export class DigestMismatchError extends FailedPreconditionError {
  constructor(
    readonly expected: string,
    readonly actual: string,
    what = 'content',
  ) {
    super(`${what} ${expected}: digest mismatch, registry sent ${actual}`);
  }
}
