import { defineConfig } from 'vitest/config';
import { findPgbouncer } from './apps/server/test/pgbouncer-setup.ts';
import { SlowestFilesReporter } from './test/slowest-files-reporter.ts';

const pgbouncerSuites = ['apps/server/src/trpc/api.test.ts', 'apps/server/test/race.test.ts'];

export default defineConfig({
  test: {
    globalSetup: ['apps/server/test/global-setup.ts'],
    // Vitest's own reporters (github-actions is one of them on GitHub), then the slowest files of the run.
    reporters: [
      'default',
      ...(process.env.GITHUB_ACTIONS === 'true' ? ['github-actions'] : []),
      new SlowestFilesReporter(),
    ],
    // Generous: a hang still ends the test, but this machine's speed at system calls varies by some 3×
    // from one day to the next (a fresh PGlite server start took 7 s alone and 30+ s under the suite).
    testTimeout: 90_000,
    hookTimeout: 120_000,
    // Two cores: more workers only fight over them.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['apps/**/*.test.ts', 'packages/**/*.test.ts'],
          exclude: ['**/*.fault.test.ts', '**/node_modules/**'],
        },
      },
      // The API and race suites again, through PgBouncer in transaction mode (started by the
      // project's setup; with no pgbouncer installed there is nothing to run, a failure under CI=true).
      {
        extends: true,
        test: {
          name: 'pgbouncer',
          include: findPgbouncer() || process.env.CI === 'true' ? pgbouncerSuites : [],
          globalSetup: ['apps/server/test/pgbouncer-setup.ts'],
        },
      },
      // Fault tests restart PostgreSQL or kill servers: they run alone, one file at a time, after the rest.
      { extends: true, test: { name: 'faults', include: ['apps/**/*.fault.test.ts'], fileParallelism: false } },
    ],
  },
});
