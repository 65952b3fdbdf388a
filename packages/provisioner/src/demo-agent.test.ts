import { describe, expect, it } from 'vitest';
import { demoAgent, eventually, getJson, postMessage, useHarness } from '../test/harness.ts';
import { processDriver } from './index.ts';

const h = useHarness();
const start = async (workMs: number) => {
  const settings = { command: [process.execPath, demoAgent], env: { DEMO_WORK_MS: String(workMs) } };
  const { agentUrl } = await processDriver.run(h.spec({ prompt: 'list the files', settings }), h.ctx);
  return agentUrl!;
};

describe('demo agent', () => {
  it('takes the prompt first, and refuses a message while it runs', async () => {
    // Working for ten minutes: still running whenever it is asked, however slow the machine.
    const agentUrl = await start(600_000);
    expect(await getJson(`${agentUrl}/status`)).toEqual({ status: 'running', agent_type: 'demo' });
    expect(await getJson(`${agentUrl}/messages`)).toMatchObject({
      messages: [{ id: 0, role: 'user', content: 'list the files' }],
    });
    const busy = await postMessage(agentUrl, 'and then?');
    expect(busy.status).toBe(409);
    expect(busy.headers.get('content-type')).toBe('application/problem+json');
    expect(await busy.json()).toMatchObject({ title: 'Conflict', status: 409 });
  });

  it('answers once its work is done, and answers problems', async () => {
    const agentUrl = await start(100);
    await eventually(async () => expect(await getJson(`${agentUrl}/status`)).toMatchObject({ status: 'stable' }));
    const { messages } = (await getJson(`${agentUrl}/messages`)) as { messages: { time: string }[] };
    expect(messages).toMatchObject([
      { id: 0, role: 'user', content: 'list the files' },
      { id: 1, role: 'agent', content: 'Done: "list the files"' },
    ]);
    expect(new Date(messages[1]!.time).toISOString()).toBe(messages[1]!.time);

    const missing = await fetch(`${agentUrl}/nowhere`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toBe('application/problem+json');
    const invalid = await fetch(`${agentUrl}/message`, { method: 'POST', body: '{"content": 1}' });
    expect(invalid.status).toBe(422);
  });
});
