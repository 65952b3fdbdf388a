/**
 * Every timing and size the drivers and the daemon use, in one place; templates override the first
 * four and the docker ones, the daemon's flags the ones they name.
 */
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

  /** docker: the agent's port in its container, its processes at most, and a stop's grace (Docker counts seconds). */
  dockerPort: 3284,
  dockerPids: 512,
  dockerStopGraceSeconds: 5,
  /** docker: how many of a failed container's last log lines its error carries (cut to outputTailBytes). */
  dockerLogLines: 50,

  /** daemon: where the drivers keep their state, relative to the working directory (`--data-dir`). */
  dataDir: '.hiatus/provisioner',
  /** daemon: jobs run at once (`--concurrency`), and the most it accepts. */
  concurrency: 4,
  maxConcurrency: 256,
  /** daemon: how often a running job's heartbeat is sent (`--heartbeat-ms`). */
  heartbeatMs: 5_000,
  /** daemon: how long one acquire waits on the server for a job (`--wait-ms`), and the server's limit. */
  acquireWaitMs: 10_000,
  maxAcquireWaitMs: 30_000,
  /** daemon: the least time between two acquires that found nothing (with `--wait-ms 0`, the poll interval). */
  emptyPollMs: 1_000,
  /** daemon: how long a call may take beyond its long poll before it counts as failed. */
  requestTimeoutMs: 15_000,
  /** daemon: how long fetching a resume's previous conversation (up to a snapshot's size) may take. */
  conversationTimeoutMs: 120_000,
  /** daemon: the first and the longest wait between retries when the server cannot be reached. */
  retryMinMs: 250,
  retryMaxMs: 15_000,
  /** daemon: how long a draining daemon keeps retrying to report jobs that ended, once asked to stop. */
  drainReportMs: 30_000,
  /** daemon: how long reconcile gathers task ids before asking the server about them at once, and the most per call. */
  shouldRunBatchMs: 20,
  shouldRunBatchSize: 1_000,
  /** The longest error text the server accepts for a failed job. */
  maxErrorChars: 10_000,
});
