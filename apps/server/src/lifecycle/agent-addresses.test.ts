import { randomUUID } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import type { App } from '../app.ts';
import type { UserActor } from '../domain/actor.ts';
import { sendToTask } from '../inbox/send.ts';
import { createTemplate } from '../templates/templates.ts';
import { autoPausePass } from './auto-pause.ts';
import { acquireBuildJob, completeBuildJob } from './jobs.ts';
import { readLogs } from './logs.ts';
import { meteredPause } from './metered.ts';
import { createTask, getTask } from './tasks.ts';

const manual = { reason: 'task_manual_pause' } as const;
const refusedWords = "the agent's address is not allowed";

/** Loopback servers made by a test, closed after it. */
const opened: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((close) => close()));
});

/** A loopback server answering every request with `handle`; `hits` counts the requests it got. */
async function listen(server: net.Server): Promise<{ url: string; port: number }> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => sockets.add(socket.on('close', () => sockets.delete(socket))));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  opened.push(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${port}`, port };
}

/** An AgentAPI agent with an empty conversation that counts the requests it got. */
async function countingAgent() {
  const agent = { url: '', hits: 0 };
  const server = http.createServer((req, res) => {
    agent.hits++;
    const body =
      req.url === '/status' ? { status: 'stable' } : req.url === '/messages' ? { messages: [] } : { ok: true };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  agent.url = (await listen(server)).url;
  return agent;
}

describe.each(testBackends())('agent addresses on %s', (backend) => {
  // The harness allows loopback (its fake agents listen there); `strict` is an app with the default policy.
  const h = useHarness(backend, { agentTimeoutMs: 2_000 });
  const strict = (): App => h.otherApp({ allowedAgentNetworks: [] });
  const name = () => `task-${randomUUID().slice(0, 8)}`;

  /** A task of `owner` at `agentUrl`, created (and so checked) by `app`, brought to active; nothing in its inbox. */
  async function activeTask(app: App, agentUrl: string, owner: UserActor = h.alice) {
    const { task } = await createTask(app, owner, { name: name(), prompt: 'p', agentUrl, sendPrompt: false });
    await h.settle();
    return getTask(app, owner, task.id);
  }

  /** Every row of every table of ours, as text: to show a string is stored nowhere. */
  async function everything(): Promise<string> {
    const { rows } = await sql<{ name: string }>`
      SELECT table_name AS name FROM information_schema.tables
      WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`.execute(h.db);
    const dumps = await Promise.all(
      rows.map(async ({ name }) => JSON.stringify((await sql`SELECT * FROM ${sql.table(name)}`.execute(h.db)).rows)),
    );
    return dumps.join('\n');
  }

  it('refuses a task at a refused address, in any spelling, with a message naming the variable; stores nothing', async () => {
    const app = strict();
    const before = await h.state();
    const port = new URL(h.agent.url).port;
    for (const agentUrl of [
      h.agent.url,
      `http://localhost:${port}`,
      `http://0x7f.1:${port}`,
      `http://2130706433:${port}`,
      `http://[::ffff:127.0.0.1]:${port}`,
      `http://[::]:${port}`,
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.1/',
    ]) {
      const attempt = createTask(app, h.alice, { name: name(), prompt: 'p', agentUrl });
      await expect(attempt, agentUrl).rejects.toMatchObject({
        code: 'bad_input',
        message: expect.stringMatching(
          /^agentUrl: the agent's address is not allowed: .*HIATUS_ALLOWED_AGENT_NETWORKS/,
        ),
      });
    }
    expect(await h.state()).toEqual(before);
  });

  it('takes a task at a loopback agent allowed by host name, and reaches it through the checked lookup', async () => {
    const app = h.otherApp({ allowedAgentNetworks: ['localhost'] });
    h.agent.say(3);
    const task = await activeTask(app, `http://localhost:${new URL(h.agent.url).port}/`);
    const paused = await meteredPause(app, h.alice, task.id, manual);
    expect(paused.snapshot).toMatchObject({ taken: true, messageCount: 3 });
  });

  it('checks again at every connection: an app whose policy refuses the address never reaches the agent', async () => {
    const agent = await countingAgent();
    const task = await activeTask(h.app, agent.url); // allowed when it was created
    const app = strict();

    const pause = meteredPause(app, h.alice, task.id, manual);
    await expect(pause).rejects.toMatchObject({
      code: 'agent_unreachable',
      message: `the agent's history could not be taken: ${refusedWords}: 127.0.0.1 is a loopback address (HIATUS_ALLOWED_AGENT_NETWORKS can allow it)`,
    });
    await expect(sendToTask(app, h.alice, task.id, 'hello')).rejects.toMatchObject({
      code: 'agent_unreachable',
      message: expect.stringContaining(refusedWords),
    });
    const logs = await readLogs(app, h.alice, task.id);
    expect(logs).toMatchObject({ source: 'snapshot', notice: expect.stringContaining(refusedWords) });
    const pass = await autoPausePass(app);
    expect(pass.checked).toBeGreaterThan(0);
    expect(agent.hits).toBe(0);

    // The app that allows it still reaches it.
    await sendToTask(h.app, h.alice, task.id, 'hello');
    expect(agent.hits).toBeGreaterThan(0);
  });

  it("trusts the URL a template's driver reported, whatever the user agents' policy", async () => {
    const app = strict();
    const admin = await h.member('admin');
    const template = `trusted-${randomUUID().slice(0, 8)}`;
    await createTemplate(app, admin, template, { driver: 'command', settings: { start: 'true', stop: 'true' } });
    const { task } = await createTask(app, h.alice, { name: name(), prompt: 'p', template });
    for (let job = await acquireBuildJob(app, 'test'); job; job = await acquireBuildJob(app, 'test')) {
      const outputs = job.taskId === task.id ? { agentUrl: h.agent.url } : {};
      await completeBuildJob(app, job.build.id, { outputs });
    }
    expect(await getTask(app, h.alice, task.id)).toMatchObject({ status: 'active', agentUrl: h.agent.url });
    h.agent.say(2);
    const paused = await meteredPause(app, h.alice, task.id, manual);
    expect(paused.snapshot).toMatchObject({ taken: true, messageCount: 2 });
  });

  /** A task of a `command` template whose start job `app` holds, acquired as provisioner `p`. */
  async function startingTemplateTask(app: App) {
    const admin = await h.member('admin');
    const template = `driven-${randomUUID().slice(0, 8)}`;
    await createTemplate(app, admin, template, { driver: 'command', settings: { start: 'true', stop: 'true' } });
    const { task } = await createTask(app, h.alice, { name: name(), prompt: 'p', template });
    for (let job = await acquireBuildJob(app, 'p'); job; job = await acquireBuildJob(app, 'p')) {
      if (job.taskId === task.id) return { task, buildId: job.build.id };
      await completeBuildJob(app, job.build.id, { holder: 'p' });
    }
    throw new Error('the start job was not acquired');
  }

  it("refuses a driver's agentUrl outside HIATUS_DRIVER_AGENT_NETWORKS (by default loopback and private), changing nothing", async () => {
    const { task, buildId } = await startingTemplateTask(h.app);
    const before = await h.state();
    const refusals: Array<[App, string, string]> = [
      [h.app, 'http://8.8.8.8:3284', '8.8.8.8 is a public address'],
      [h.app, 'http://[fd00:ec2::254]/', 'fd00:ec2::254 is a cloud metadata address'],
      [h.app, 'http://169.254.1.1/', '169.254.1.1 is a link-local address'],
      [h.otherApp({ driverAgentNetworks: ['10.0.0.0/8'] }), h.agent.url, '127.0.0.1 is a loopback address'],
    ];
    for (const [app, agentUrl, why] of refusals) {
      const attempt = completeBuildJob(app, buildId, { holder: 'p', outputs: { agentUrl } });
      await expect(attempt, agentUrl).rejects.toMatchObject({
        code: 'bad_input',
        message: expect.stringMatching(
          new RegExp(
            `^outputs\\.agentUrl: the template agent's address is not allowed: ${why} \\(.*HIATUS_DRIVER_AGENT_NETWORKS`,
          ),
        ),
      });
    }
    expect(await h.state()).toEqual(before); // the job still runs: its holder reports the refusal as its failure

    // The operator's list is the whole of it: a public network it names is allowed.
    const wide = h.otherApp({ driverAgentNetworks: ['8.8.8.0/24'] });
    await completeBuildJob(wide, buildId, { holder: 'p', outputs: { agentUrl: 'http://8.8.8.8:3284' } });
    expect(await getTask(h.app, h.alice, task.id)).toMatchObject({
      status: 'active',
      agentUrl: 'http://8.8.8.8:3284',
    });
  });

  it("holds a driver's agent to HIATUS_DRIVER_AGENT_NETWORKS at every connection too", async () => {
    const agent = await countingAgent();
    const { task, buildId } = await startingTemplateTask(h.app);
    await completeBuildJob(h.app, buildId, { holder: 'p', outputs: { agentUrl: agent.url } }); // loopback: allowed
    const narrow = h.otherApp({ driverAgentNetworks: ['10.0.0.0/8'] });
    await expect(meteredPause(narrow, h.alice, task.id, manual)).rejects.toMatchObject({
      code: 'agent_unreachable',
      message: `the agent's history could not be taken: the template agent's address is not allowed: 127.0.0.1 is a loopback address (HIATUS_DRIVER_AGENT_NETWORKS can allow it)`,
    });
    expect(agent.hits).toBe(0);
    await sendToTask(h.app, h.alice, task.id, 'hello'); // the default list reaches it
    expect(agent.hits).toBeGreaterThan(0);
  });

  it("never repeats the agent's answer: not in the pause error, the log's notice, nor any table", async () => {
    const secret = `SECRET-${randomUUID()}`;
    const leaky = http.createServer((_req, res) => {
      res.writeHead(500, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify({ title: secret, detail: secret }));
    });
    const task = await activeTask(h.app, (await listen(leaky)).url);

    const pause = meteredPause(h.app, h.alice, task.id, manual);
    await expect(pause).rejects.toMatchObject({
      code: 'agent_unreachable',
      message: "the agent's history could not be taken: the agent answered status 500",
    });
    const send = await sendToTask(h.app, h.alice, task.id, 'hi').catch((e: Error) => e);
    expect((send as Error).message).toBe("the agent's history could not be taken: the agent answered status 500");
    const logs = await readLogs(h.app, h.alice, task.id);
    expect(logs.notice).toBe('the agent did not answer (the agent answered status 500); showing the snapshot');
    await meteredPause(h.app, h.alice, task.id, { ...manual, withoutSnapshot: true });

    const failures = await h.db.selectFrom('task_pause_failures').selectAll().where('task_id', '=', task.id).execute();
    expect(failures.map((f) => f.detail)).toEqual([
      "the agent's history could not be taken: the agent answered status 500",
    ]);
    expect(await everything()).not.toContain(secret);
  });

  it('says a closed port and a port that does not speak HTTP in the same words, in errors and pause failures', async () => {
    const closed = await listen(net.createServer());
    await opened.pop()!();
    const garbage = await listen(net.createServer((socket) => socket.end('220 mail.internal ESMTP ready\r\n')));
    const tasks = [await activeTask(h.app, closed.url), await activeTask(h.app, garbage.url)];
    const messages: string[] = [];
    for (const task of tasks) {
      const error = await meteredPause(h.app, h.alice, task.id, manual).catch((e: Error) => e);
      messages.push((error as Error).message);
    }
    expect(messages).toEqual(Array(2).fill("the agent's history could not be taken: the agent is unreachable"));
    const details = await h.db
      .selectFrom('task_pause_failures')
      .select('detail')
      .where(
        'task_id',
        'in',
        tasks.map((t) => t.id),
      )
      .execute();
    expect(new Set(details.map((d) => d.detail))).toEqual(new Set([messages[0]]));
  });
});
