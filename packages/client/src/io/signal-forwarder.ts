/**
 * The signals a foreground container gets when berth gets them, as ctr's
 * ForwardAllSignals (which forwards everything Go can catch but SIGURG).
 * SIGCHLD and SIGPIPE are this process's own business, and SIGKILL/SIGSTOP
 * cannot be caught.
 */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = [
  'SIGHUP',
  'SIGINT',
  'SIGQUIT',
  'SIGTERM',
  'SIGUSR1',
  'SIGUSR2',
  'SIGALRM',
  'SIGCONT',
  'SIGTSTP',
  'SIGTTIN',
  'SIGTTOU',
  'SIGWINCH',
];

/**
 * Forward the signals this process receives to `kill` until the returned
 * function is called. While forwarding, they no longer end this process.
 */
export function forwardSignals(kill: (signal: NodeJS.Signals) => Promise<void>, signals = FORWARDED_SIGNALS): () => void {
  const handlers = signals.map((signal) => {
    const handler = () => {
      kill(signal).catch(() => {
        // The task may be gone already; the wait that follows says how it ended.
      });
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  };
}
