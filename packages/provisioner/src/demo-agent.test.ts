import { describe, expect, it } from 'vitest';
import { demoAgent, eventually, getJson, postMessage, useHarness } from '../test/harness.ts';
import { processDriver } from './index.ts';

const h = useHarness();

describe('demo agent', () => {
  it('speaks AgentAPI: takes the prompt first, refuses a message while running, answers problems', async () => {
    const settings = { command: [process.execPath, demoAgent], env: { DEMO_WORK_MS: '1000' } }; // long enough to see it running
    const { agentUrl } = await processDriver.run(h.spec({ prompt: 'list the files', settings }), h.ctx);
    expect(await getJson(`${agentUrl}/status`)).toEqual({ status: 'running', agent_type: 'demo' });

    const busy = await postMessage(agentUrl!, 'and then?');
    expect(busy.status).toBe(409);
    expect(busy.headers.get('content-type')).toBe('application/problem+json');
    expect(await busy.json()).toMatchObject({ title: 'Conflict', status: 409 });

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
