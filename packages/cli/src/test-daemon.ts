import { parseConfig, type RunningDaemon, startDaemon } from '@berth/daemon';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestDaemon {
  readonly address: string;
  readonly daemon: RunningDaemon;
  close(): Promise<void>;
}

/** An in-process berthd on private temporary folders, for tests. */
export async function startTestDaemon(): Promise<TestDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-cli-'));
  const address = join(dir, 'berthd.sock');
  const config = parseConfig('', '(defaults)', {
    root: join(dir, 'root'),
    state: join(dir, 'state'),
    address,
    logLevel: 'error',
  });
  try {
    const daemon = await startDaemon(config);
    return {
      address,
      daemon,
      close: async () => {
        await daemon.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
