/**
 * What a bench run started (engines, registry, temporary folders), released in reverse order
 * once, whether the run ends, fails or is interrupted.
 */
export class Resources {
  private readonly releases: { readonly what: string; readonly release: () => Promise<void> }[] = [];
  private closing: Promise<string[]> | undefined;

  add(what: string, release: () => Promise<void>): void {
    if (this.closing) throw new Error(`cannot hold ${what}: the bench is stopping`);
    this.releases.push({ what, release });
  }

  /** Releases one now (e.g. berthd, so that its CPU profile is written); later closeAll skips it. */
  async release(what: string): Promise<void> {
    const i = this.releases.findIndex((r) => r.what === what);
    if (i === -1) return;
    const [r] = this.releases.splice(i, 1);
    await r?.release();
  }

  /** Releases everything, newest first; answers what could not be released. */
  closeAll(): Promise<string[]> {
    this.closing ??= (async () => {
      const failures: string[] = [];
      for (const r of this.releases.splice(0).reverse()) {
        try {
          await r.release();
        } catch (err) {
          failures.push(`${r.what}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      return failures;
    })();
    return this.closing;
  }
}
