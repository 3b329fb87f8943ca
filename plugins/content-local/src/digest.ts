import { InvalidArgumentError } from '@berth/plugin-api';

/** The algorithms a digest may name; the value is the length of its hex. */
export const digestHexLength = { sha256: 64, sha512: 128 } as const;

export type DigestAlgorithm = keyof typeof digestHexLength;

export interface ParsedDigest {
  readonly algorithm: DigestAlgorithm;
  readonly hex: string;
  /** `<algorithm>:<hex>`, as given. */
  readonly digest: string;
}

export function isDigestAlgorithm(name: string): name is DigestAlgorithm {
  return Object.hasOwn(digestHexLength, name);
}

/**
 * Parses `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`, the
 * only forms that may become a path under `blobs/`. Anything else is
 * InvalidArgumentError naming the digest.
 */
export function parseDigest(digest: unknown): ParsedDigest {
  if (typeof digest !== 'string') throw new InvalidArgumentError(`invalid digest ${String(digest)}: not a string`);
  const colon = digest.indexOf(':');
  if (colon <= 0) throw new InvalidArgumentError(`invalid digest ${JSON.stringify(digest)}: want <algorithm>:<hex>`);
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  if (!isDigestAlgorithm(algorithm)) {
    throw new InvalidArgumentError(`invalid digest ${JSON.stringify(digest)}: unsupported algorithm (sha256, sha512)`);
  }
  if (!isHex(hex, digestHexLength[algorithm])) {
    throw new InvalidArgumentError(
      `invalid digest ${JSON.stringify(digest)}: want ${digestHexLength[algorithm]} lowercase hex digits after "${algorithm}:"`,
    );
  }
  return { algorithm, hex, digest };
}

export function isHex(text: string, length: number): boolean {
  return text.length === length && /^[0-9a-f]+$/.test(text);
}
