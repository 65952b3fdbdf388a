import type { Reporter, TestModule, Vitest } from 'vitest/node';

/** How many files the list shows. */
const shown = 10;

/**
 * After the default reporter's summary, the run's slowest test files: where a faster suite has the
 * most to win. A file's time is its import (the collection) plus its tests and hooks; a file that two
 * projects run (main and pgbouncer) is listed once for each.
 */
export class SlowestFilesReporter implements Reporter {
  private log: (text: string) => void = console.log;

  onInit(vitest: Vitest): void {
    this.log = (text) => vitest.logger.log(text);
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const timed = testModules
      .filter((testModule) => testModule.state() !== 'skipped' && testModule.state() !== 'queued')
      .map((testModule) => {
        const { duration, collectDuration } = testModule.diagnostic();
        return { testModule, tests: duration, collect: collectDuration, total: duration + collectDuration };
      })
      .sort((a, b) => b.total - a.total)
      .slice(0, shown);
    if (timed.length === 0) return;
    const width = Math.max(...timed.map(({ total }) => seconds(total).length));
    const lines = timed.map(({ testModule, tests, collect, total }) => {
      const project = testModule.project.name ? ` [${testModule.project.name}]` : '';
      const parts = `tests ${seconds(tests)}, import ${seconds(collect)}`;
      return `  ${seconds(total).padStart(width)}  ${testModule.relativeModuleId}${project}  (${parts})`;
    });
    this.log(`\n Slowest ${timed.length === 1 ? 'file' : `${timed.length} files`} (tests and hooks, plus import):`);
    for (const line of lines) this.log(line);
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
