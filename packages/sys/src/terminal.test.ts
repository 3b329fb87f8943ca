import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { test } from 'node:test';
import { getWindowSize, openPty, setWindowSize } from './terminal.js';

test('TIOCSWINSZ on a pty master is what the slave reports', () => {
  const { master, slavePath } = openPty();
  const slave = openSync(slavePath, 'r+');
  try {
    setWindowSize(master, { columns: 132, rows: 43 });
    assert.deepEqual(getWindowSize(slave), { rows: 43, columns: 132 });
  } finally {
    closeSync(slave);
    closeSync(master);
  }
});
