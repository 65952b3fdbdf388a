import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, repoRoot } from './config.ts';

describe('loadConfig', () => {
  it('defaults to the embedded PGlite under the repository and port 8080', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8080);
    expect(config.host).toBe('127.0.0.1');
    expect(config.database).toEqual({ kind: 'pglite', dataDir: path.join(repoRoot, '.hiatus', 'data') });
  });

  it('uses PostgreSQL when DATABASE_URL is set, with the pool size asked for', () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://u@db:5432/hiatus', DATABASE_POOL_SIZE: '25' });
    expect(config.database).toEqual({ kind: 'postgres', url: 'postgres://u@db:5432/hiatus', poolSize: 25 });
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', PORT: '' }).database.kind).toBe('pglite');
  });

  it('names every bad variable in its error', () => {
    const attempt = () => loadConfig({ PORT: 'eighty', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud' });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/PORT/);
    expect(attempt).toThrow(/DATABASE_URL: must be a postgres/);
    expect(attempt).toThrow(/LOG_LEVEL/);
  });

  it('refuses a short, monotonous or guessable admin or metrics token, naming the variable and not the value', () => {
    const strong = 'Zr8Qm2Kx7Vt4Lp9Wc3Nb6Hd1Fg5Js0Ay';
    expect(loadConfig({ HIATUS_ADMIN_TOKEN: strong, HIATUS_METRICS_TOKEN: `m-${strong}` })).toMatchObject({
      adminToken: strong,
      metricsToken: `m-${strong}`,
    });
    expect(loadConfig({}).metricsToken).toBeUndefined();
    for (const [weak, why] of [
      ['admin-token-0123456789', /at least 32 characters \(it has 22\)/],
      ['a'.repeat(40), /too little variety \(1 distinct/],
      ['abababababababababababababababababab12', /too little variety \(4 distinct/],
      ['Kq7Wz2Lm9X'.repeat(4), /one short string repeated/],
      [`${strong} ${strong}`, /white space/],
      // Long and varied enough, and guessed all the same: a common password with digits, a keyboard walk.
      ['Password123Password123Password12345', /guessable: .*about 10\^\d guesses/],
      ['qwertyuiopasdfghjklzxcvbnm123456', /guessable: .*about 10\^1[0-5] guesses/],
    ] as const) {
      for (const variable of ['HIATUS_ADMIN_TOKEN', 'HIATUS_METRICS_TOKEN']) {
        const attempt = () => loadConfig({ [variable]: weak });
        expect(attempt).toThrow(ConfigError);
        expect(attempt).toThrow(new RegExp(`${variable}: .*${why.source}`));
        expect(attempt).toThrow(/openssl rand/);
        expect(attempt).not.toThrow(weak);
      }
    }
  });

  it('reads the per-key limits, turns the rate limit off with 0, and keeps a full batch within the burst', () => {
    expect(loadConfig({}).limits).toEqual({
      maxBatchSize: 100,
      ratePerSecond: 100,
      rateBurst: 400,
      maxOpenWatchesPerKey: 50,
      maxConcurrentCallsPerKey: 4,
    });
    const tight = loadConfig({
      HIATUS_RATE_LIMIT_PER_SECOND: '0.5',
      HIATUS_RATE_LIMIT_BURST: '10',
      HIATUS_MAX_BATCH_SIZE: '10',
    });
    expect(tight.limits).toMatchObject({ ratePerSecond: 0.5, rateBurst: 10, maxBatchSize: 10 });
    expect(loadConfig({ HIATUS_RATE_LIMIT_PER_SECOND: '0', HIATUS_RATE_LIMIT_BURST: '1' }).limits.ratePerSecond).toBe(
      0,
    );
    const attempt = () => loadConfig({ HIATUS_RATE_LIMIT_BURST: '50' });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/HIATUS_RATE_LIMIT_BURST: must be at least HIATUS_MAX_BATCH_SIZE \(100\)/);
    expect(loadConfig({ HIATUS_LIVE_LOG_CACHE_MS: '0', HIATUS_HEAVY_READ_CONCURRENCY: '1' }).settings).toMatchObject({
      liveHistoryTtlMs: 0,
      heavyReadConcurrency: 1,
    });
  });

  it('stops the server at start with a message naming the bad value', async () => {
    const main = path.join(repoRoot, 'apps/server/src/main.ts');
    const tsx = path.join(repoRoot, 'node_modules/.bin/tsx');
    const started = promisify(execFile)(tsx, [main], { env: { ...process.env, PORT: '99999' } });
    await expect(started).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/PORT/) });
  });
});
