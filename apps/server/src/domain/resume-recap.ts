/**
 * The recap a template's `resume.message` queues first after a resume, so a new agent knows what
 * the task is and where it stopped: the original prompt, then the last exchanges before the pause,
 * newest kept, all within `maxBytes` of UTF-8. The prompt takes at most half of the room; the
 * newest message is cut (its end kept) rather than left out; older ones go whole or not at all.
 *
 * @example resumeRecap('fix the build', [{ role: 'user', content: 'fix the build' }, ...], 8192)
 */
export function resumeRecap(
  prompt: string,
  conversation: ReadonlyArray<{ role: string; content: string }>,
  maxBytes: number,
): string {
  const original = prompt.trim() || conversation.find((m) => m.role === 'user')?.content.trim() || '';
  const head = 'This task was paused and has been resumed with a new agent. ';
  const tail = '\n\nContinue the task from where it stopped.';
  const promptPart = original
    ? `Its original prompt:\n\n${cut(original, Math.floor((maxBytes - bytes(head) - bytes(tail)) / 2), 'start')}`
    : 'It had no prompt.';
  const room = maxBytes - bytes(head) - bytes(promptPart) - bytes(tail);
  const kept: string[] = [];
  let used = 0;
  const intro = (count: number) =>
    `\n\nThe last ${count === 1 ? 'message' : `${count} messages`} before the pause (of ${conversation.length}):\n`;
  for (let i = conversation.length - 1; i >= 0; i--) {
    const message = conversation[i]!;
    const label = `\n[${message.role}] `;
    const entry = `${label}${message.content}`;
    if (used + bytes(entry) + bytes(intro(kept.length + 1)) <= room) {
      kept.unshift(entry);
      used += bytes(entry);
      continue;
    }
    // The newest message is cut, keeping its end (the agent's last words), when nothing else would fit.
    const left = room - bytes(label) - bytes(intro(1));
    if (kept.length === 0 && left >= 64) kept.unshift(`${label}${cut(message.content, left, 'end')}`);
    break;
  }
  const text = `${head}${promptPart}${kept.length > 0 ? intro(kept.length) + kept.join('') : ''}${tail}`;
  return cut(text, maxBytes, 'start');
}

function bytes(text: string): number {
  return Buffer.byteLength(text);
}

/** `text` within `maxBytes` of UTF-8, keeping its start or its end, an ellipsis where it was cut; never a split character. */
function cut(text: string, maxBytes: number, keep: 'start' | 'end'): string {
  if (bytes(text) <= maxBytes) return text;
  const room = Math.max(0, maxBytes - bytes('…'));
  const chars = [...text];
  let size = 0;
  const taken: string[] = [];
  for (let i = 0; i < chars.length; i++) {
    const char = chars[keep === 'start' ? i : chars.length - 1 - i]!;
    size += bytes(char);
    if (size > room) break;
    taken.push(char);
  }
  return keep === 'start' ? `${taken.join('')}…` : `…${taken.reverse().join('')}`;
}
