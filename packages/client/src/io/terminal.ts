import type { ReadStream, WriteStream } from 'node:tty';
import type { Readable, Writable } from 'node:stream';

export interface TerminalSize {
  readonly width: number;
  readonly height: number;
}

const isTtyInput = (s: Readable | null | undefined): s is ReadStream => !!s && (s as ReadStream).isTTY === true;
const isTtyOutput = (s: Writable | null | undefined): s is WriteStream => !!s && (s as WriteStream).isTTY === true;

/**
 * The client's own terminal while a container's terminal is attached, as
 * ctr's console: raw input (keys, Ctrl-C included, go to the container), and
 * the window size followed (SIGWINCH → `resize`). Streams that are not
 * terminals are left alone.
 */
export class ConsoleSession {
  private readonly wasRaw: boolean;
  private onResize?: () => void;

  constructor(
    private readonly input: Readable | null | undefined,
    private readonly output: Writable | null | undefined,
  ) {
    this.wasRaw = isTtyInput(input) ? input.isRaw : false;
    if (isTtyInput(input)) input.setRawMode(true);
  }

  /** The output terminal's size; undefined when it is not a terminal. */
  size(): TerminalSize | undefined {
    if (!isTtyOutput(this.output)) return undefined;
    const [width, height] = this.output.getWindowSize();
    return { width, height };
  }

  /** Call `resize` with the size now, then on every change; errors are the caller's to swallow. */
  follow(resize: (size: TerminalSize) => Promise<void>): void {
    const send = () => {
      const size = this.size();
      if (size) resize(size).catch(() => {});
    };
    send();
    if (isTtyOutput(this.output)) {
      this.onResize = send;
      this.output.on('resize', send);
    }
  }

  /** Stop following the size and restore the input's mode. */
  restore(): void {
    if (this.onResize && isTtyOutput(this.output)) this.output.off('resize', this.onResize);
    this.onResize = undefined;
    if (isTtyInput(this.input)) this.input.setRawMode(this.wasRaw);
  }
}
