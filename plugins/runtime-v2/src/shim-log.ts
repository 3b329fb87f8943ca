import type { Logger } from '@berth/plugin-api';
import { closeSync, constants, openSync } from 'node:fs';
import { Socket } from 'node:net';

/**
 * Keeps a reader on a bundle's `log` FIFO (the stock shim dies without one)
 * and passes each line the shim writes to berthd's log at debug. Opened
 * read-write so it neither blocks waiting for the shim nor sees end-of-file
 * when the shim goes away.
 */
export class ShimLog {
  private readonly socket: Socket;
  private partial = '';

  constructor(
    path: string,
    private readonly log: Logger,
  ) {
    const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      this.socket = new Socket({ fd, readable: true, writable: false });
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err) => this.log.debug('shim log reader failed', { error: err.message }));
  }

  close(): void {
    if (this.partial) this.log.debug(this.partial);
    this.partial = '';
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const lines = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = lines.pop() ?? '';
    if (this.partial.length > 64 * 1024) {
      lines.push(this.partial);
      this.partial = '';
    }
    for (const line of lines) if (line.trim()) this.log.debug(line.trimEnd());
  }
}
