import { InvalidArgumentError } from './errors.js';

const IDENTIFIER = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;
const MAX_IDENTIFIER = 76;
/** containerd caps a label's key plus value at 4096 bytes. */
export const MAX_LABEL_BYTES = 4096;

/** containerd's rule for namespace names and other identifiers. */
export function validateIdentifier(field: string, value: string): void {
  if (value === '') throw new InvalidArgumentError(`${field}: identifier must not be empty`);
  if (value.length > MAX_IDENTIFIER) {
    throw new InvalidArgumentError(
      `${field}: identifier "${value.slice(0, 20)}…" greater than maximum length (${MAX_IDENTIFIER} characters)`,
    );
  }
  if (!IDENTIFIER.test(value)) {
    throw new InvalidArgumentError(
      `${field}: identifier "${value}" must match ${IDENTIFIER.source}`,
    );
  }
}

export function validateLabels(field: string, labels: Readonly<Record<string, string>>): void {
  for (const [key, value] of Object.entries(labels)) {
    if (key === '') throw new InvalidArgumentError(`${field}: label key must not be empty`);
    const size = Buffer.byteLength(key) + Buffer.byteLength(value);
    if (size > MAX_LABEL_BYTES) {
      throw new InvalidArgumentError(
        `${field}: label key and value greater than maximum size (${MAX_LABEL_BYTES} bytes), key: ${key.slice(0, 32)}`,
      );
    }
  }
}

/**
 * Apply containerd field paths to labels: `labels` replaces them all,
 * `labels.<key>` (the key is everything after the first dot) sets one,
 * and an empty value deletes it.
 */
export function applyLabelPaths(
  current: Readonly<Record<string, string>>,
  update: Readonly<Record<string, string>>,
  paths: readonly string[],
): Record<string, string> {
  if (paths.length === 0) return dropEmptyLabels(update);
  let next: Record<string, string> = { ...current };
  for (const path of paths) {
    if (path === 'labels') {
      next = { ...update };
    } else if (path.startsWith('labels.')) {
      const key = path.slice('labels.'.length);
      // Own keys only: `labels.__proto__` must not read Object.prototype.
      const value = Object.hasOwn(update, key) ? update[key] : undefined;
      if (value === undefined || value === '') delete next[key];
      // defineProperty, not assignment: `next.__proto__ = v` would hit the prototype setter.
      else Object.defineProperty(next, key, { value, enumerable: true, writable: true, configurable: true });
    } else {
      throw new InvalidArgumentError(`cannot update ${JSON.stringify(path)} field`);
    }
  }
  return dropEmptyLabels(next);
}

/** containerd stores no label with an empty value: setting one to "" removes it. */
export function dropEmptyLabels(labels: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== ''));
}

const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** An OCI digest berth can verify: sha256 or sha512, lowercase hex of the right length. */
export function validateDigest(field: string, digest: string): void {
  if (!DIGEST.test(digest)) {
    throw new InvalidArgumentError(`${field}: invalid digest ${JSON.stringify(digest.slice(0, 140))}`);
  }
}

export function isDigest(value: string): boolean {
  return DIGEST.test(value);
}
