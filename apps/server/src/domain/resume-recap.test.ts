import { describe, expect, it } from 'vitest';
import { resumeRecap } from './resume-recap.ts';

const talk = (count: number, size = 40) =>
  Array.from({ length: count }, (_, id) => ({
    role: id % 2 === 0 ? 'user' : 'agent',
    content: `message ${id} `.padEnd(size, 'x'),
  }));

describe('a resume recap', () => {
  it('holds the original prompt, then the last exchanges, newest last, within its budget', () => {
    const recap = resumeRecap('fix the flaky test', talk(100), 1024);
    expect(Buffer.byteLength(recap)).toBeLessThanOrEqual(1024);
    expect(recap).toMatch(
      /^This task was paused and has been resumed with a new agent\. Its original prompt:\n\nfix the flaky test\n/,
    );
    expect(recap).toMatch(/\n\[agent\] message 99 x+\n\nContinue the task from where it stopped\.$/);
    const kept = [...recap.matchAll(/\[(user|agent)\] message (\d+) /g)].map((m) => Number(m[2]));
    expect(kept.length).toBeGreaterThan(5);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => 100 - kept.length + i)); // the newest, in order
    expect(recap).toContain(`The last ${kept.length} messages before the pause (of 100):`);
  });

  it('keeps everything when it fits, and takes the first user message when the task has no prompt', () => {
    const recap = resumeRecap('', talk(2), 8192);
    expect(recap).toContain(`Its original prompt:\n\n${talk(1)[0]!.content}`);
    expect(recap).toContain('The last 2 messages before the pause (of 2):');
    expect(resumeRecap('', [], 8192)).toBe(
      'This task was paused and has been resumed with a new agent. It had no prompt.\n\nContinue the task from where it stopped.',
    );
  });

  it('cuts a long prompt to half the room and the newest message to its end, never splitting a character', () => {
    const recap = resumeRecap('é'.repeat(5000), [{ role: 'agent', content: `${'日本'.repeat(3000)}THE END` }], 2048);
    expect(Buffer.byteLength(recap)).toBeLessThanOrEqual(2048);
    expect(recap).not.toContain('\ufffd');
    expect(recap).toMatch(/é…\n/); // the prompt's start, cut
    expect(recap).toMatch(/\[agent\] …(日本)+THE END\n/); // the message's end, kept
    for (const budget of [1024, 1500, 4096]) {
      expect(Buffer.byteLength(resumeRecap('😀'.repeat(2000), talk(50, 400), budget))).toBeLessThanOrEqual(budget);
    }
  });
});
