/** Every timing and size the drivers use, in one place; templates override the first four. */
export const defaults = Object.freeze({
  /** process: how long an agent has to answer `GET /status` after its start. */
  startTimeoutMs: 30_000,
  /** How long a group has between SIGTERM and SIGKILL (process driver stops, failed commands, reconcile). */
  stopGraceMs: 5_000,
  /** command: how long one command may run. */
  commandTimeoutMs: 120_000,
  /** How often a starting agent's `/status` is tried, and how long one try may take. */
  statusPollMs: 100,
  statusRequestTimeoutMs: 1_000,
  /** How often a stopping group is looked at, and how long it may take to vanish once SIGKILLed. */
  groupPollMs: 50,
  killWaitMs: 2_000,
  /** How much output an error message carries: enough to see why, not a whole log. */
  outputTailBytes: 2048,
  /** How much of a start command's stdout is read for its last line. */
  startOutputBytes: 64 * 1024,
});
