import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['apps/server/test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
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
      // Fault tests restart PostgreSQL or kill servers: they run alone, one file at a time, after the rest.
      { extends: true, test: { name: 'faults', include: ['apps/**/*.fault.test.ts'], fileParallelism: false } },
    ],
  },
});
