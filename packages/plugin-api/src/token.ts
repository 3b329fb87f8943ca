/**
 * A typed DI token. The constant and the interface it stands for share one
 * name (`export const EventExchange = token<EventExchange>('EventExchange')`),
 * so `ctx.get(EventExchange)` is typed without casts.
 *
 * A `multi` token is a contribution point: many plugins provide it and
 * consumers receive all of them by plugin id (gRPC services, snapshotters,
 * spec modifiers, content sources).
 */
export interface Token<T> {
  readonly key: symbol;
  readonly name: string;
  readonly multi: boolean;
  /** Phantom field carrying T; never set. */
  readonly __type?: T;
}

export type TokenType<K> = K extends Token<infer T> ? T : never;

export function token<T>(name: string, options: { multi?: boolean } = {}): Token<T> {
  // Symbol.for: a third-party plugin that bundles its own copy of this
  // package still names the same token.
  return Object.freeze({ key: Symbol.for(`berth.token.${name}`), name, multi: options.multi ?? false });
}
