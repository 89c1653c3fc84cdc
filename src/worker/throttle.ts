// Progress callbacks cross the worker boundary as messages: send at most one every `ms`, always send
// the ones that matter (`urgent`, e.g. a phase change), and never lose the last one (`flush`).
// A callback that throws or rejects (the page went away) is ignored: progress must never fail the work.

export interface Throttled<T> {
  push(value: T): void;
  /** Send what is pending now. */
  flush(): void;
}

export function throttled<T>(
  fn: ((value: T) => unknown) | undefined,
  ms: number,
  urgent: (previous: T | null, value: T) => boolean = () => false,
): Throttled<T> {
  let last = -Infinity;
  let previous: T | null = null;
  let pending: { value: T } | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const send = (value: T): void => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    pending = null;
    previous = value;
    last = performance.now();
    try {
      void Promise.resolve(fn?.(value)).catch(() => {});
    } catch {
      // ignored: see above
    }
  };
  return {
    push(value) {
      if (!fn) return;
      const now = performance.now();
      if (urgent(previous, value) || now - last >= ms) {
        send(value);
        return;
      }
      pending = { value };
      timer ??= setTimeout(() => pending && send(pending.value), ms - (now - last));
    },
    flush() {
      if (pending) send(pending.value);
    },
  };
}
