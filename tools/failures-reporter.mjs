// A node:test reporter that writes only the failures: for each failed test, its file, its
// name (with the suites around it) and the error with its stack. tools/run-tests.mjs adds it
// when BERTH_TEST_FAILURES_DIR is set (the bootstrap sets it for `npm test`), so that a long,
// interleaved nx run can end by repeating what failed, and CI's last lines name the test.

import { inspect } from 'node:util';

export default async function* failures(source) {
  const open = []; // names of the tests and suites started and not finished, by nesting
  for await (const event of source) {
    if (event.type === 'test:start') {
      open[event.data.nesting] = event.data.name;
      open.length = event.data.nesting + 1;
      continue;
    }
    if (event.type !== 'test:fail') continue;
    const { data } = event;
    if (data.todo !== undefined && data.todo !== false) continue; // expected to fail, and not a failure of the run
    const error = data.details?.error;
    // A suite fails with its subtests; those are reported on their own.
    if (error?.failureType === 'subtestsFailed') continue;
    const path = [...open.slice(0, data.nesting), data.name].join(' > ');
    const cause = error?.cause ?? error;
    const text = (cause instanceof Error ? (cause.stack ?? String(cause)) : inspect(cause, { depth: 4 }))
      .split('\n')
      .filter((line) => !/\(node:|^\s+at node:|^\s+at new Promise|^\s+at Array\.map/.test(line)) // the test runner's own frames
      .join('\n');
    yield `not ok: ${data.file ?? '?'}\n  ${path}\n${text.replace(/^/gm, '    ')}\n\n`;
  }
}
