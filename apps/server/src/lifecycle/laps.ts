/**
 * A stopwatch a rule can hand its phases to without knowing who measures them: the rule says
 * where a phase begins and ends, the caller reads the times.
 */
export class Laps {
  readonly ms: Record<string, number> = {};

  async time<T>(phase: string, run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await run();
    } finally {
      this.ms[phase] = (this.ms[phase] ?? 0) + performance.now() - started;
    }
  }
}
