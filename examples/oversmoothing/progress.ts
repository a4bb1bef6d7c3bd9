/**
 * A single progress line on stderr, redrawn in place, shown only when stderr is a terminal
 * (piped or redirected runs stay quiet). Redraws at most every 100 ms.
 */
export class Progress {
  readonly #enabled: boolean;
  #last = 0;
  #shown = false;

  constructor(enabled = process.stderr.isTTY === true) {
    this.#enabled = enabled;
  }

  /** Shows `label` with a `done / total` count; drawn now when `force`, else throttled. */
  update(label: string, done: number, total: number, force = false): void {
    if (!this.#enabled) return;
    const now = Date.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    const width = Math.max(20, (process.stderr.columns ?? 80) - 1);
    const text = `${label} ${done}/${total}`.slice(0, width);
    process.stderr.write(`\r\x1b[2K${text}`);
    this.#shown = true;
  }

  /** Erases the line, so that what is printed next starts on a clean line. */
  clear(): void {
    if (!this.#enabled || !this.#shown) return;
    process.stderr.write('\r\x1b[2K');
    this.#shown = false;
  }
}
