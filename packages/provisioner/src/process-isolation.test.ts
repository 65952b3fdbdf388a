import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdtemp, readFile, rm, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { apiClient } from '../../../apps/server/test/api-client.ts';
import {
  createTestDatabase,
  databaseEnv,
  postgresServerUrl,
  type TestDatabase,
} from '../../../apps/server/test/databases.ts';
import { type ServerProcess, startServerProcess } from '../../../apps/server/test/server-process.ts';
import { startTestServer, type TestServer } from '../../../apps/server/test/test-server.ts';
import { killEveryDaemon, startDaemon } from '../test/daemon-process.ts';
import { demoAgent, environOf, eventually, getJson, processesOfTask, sh, useHarness } from '../test/harness.ts';
import { agentSeparationWarning, type ConversationMessage, processDriver } from './index.ts';

const root = process.getuid?.() === 0;
const node = process.execPath;
const nobody = 65534;

/** A process that runs (a zombie has ended), read from /proc. */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  return state !== 'Z' && state !== 'X';
}

/** The real uid and gid of a process. */
async function idsOf(pid: number): Promise<{ uid: number; gid: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1]);
  return { uid: field('Uid'), gid: field('Gid') };
}

const mode = async (path: string) => {
  const info = await stat(path);
  return { mode: info.mode & 0o777, uid: info.uid };
};

/** Runs each test of the block with HIATUS_AGENT_USER set to `value` (the suite's afterEach unsets it). */
function withAgentUser(value: string): void {
  beforeEach(() => {
    process.env.HIATUS_AGENT_USER = value;
  });
}

describe.runIf(root)('the process driver, run by root', () => {
  const h = useHarness();
  afterEach(() => {
    delete process.env.HIATUS_AGENT_USER;
  });

  const start = async (settings: object, extra: object = {}) =>
    (await processDriver.run(h.spec({ settings, ...extra }), h.ctx)) as { agentUrl: string; pid: number };

  it('runs the agent as nobody by default, in a 0700 workspace of its own; the rest of the data directory is out of its reach', async () => {
    delete process.env.HIATUS_AGENT_USER;
    const can = (what: string, test: string) =>
      `if ${test} >/dev/null 2>&1; then echo "${what}: yes"; else echo "${what}: no"; fi`;
    const probe = [
      can('list the data directory', 'ls "$DATA"'),
      can('list the workspaces', 'ls "$DATA/workspaces"'),
      can('read its pid file', 'cat "$DATA/pids/$HIATUS_TASK_ID.json"'),
      can('read its log', 'cat "$DATA/logs/$HIATUS_TASK_ID.log"'),
      can('list the conversations', 'ls "$DATA/conversations"'),
      can('read its conversation', 'cat "$HIATUS_PREVIOUS_CONVERSATION"'),
      can('write its workspace', 'touch notes.txt'),
    ].join('; ');
    const command = `{ ${probe}; echo "home: $HOME"; } > probe.txt; exec ${sh(node)} ${sh(demoAgent)}`;
    const settings = { command, env: { DATA: h.dataDir } };
    const previousConversation: ConversationMessage[] = [
      { id: 0, role: 'user', content: 'hi', time: '2026-12-08T03:00:00Z' },
    ];
    const { agentUrl, pid } = await start(settings, { start: 'resume', reason: 'task_resume', previousConversation });
    expect(await getJson(`${agentUrl}/status`)).toMatchObject({ status: 'stable' });

    expect(await idsOf(pid)).toEqual({ uid: nobody, gid: nobody });
    const workspace = join(h.dataDir, 'workspaces', h.taskId);
    expect((await readFile(join(workspace, 'probe.txt'), 'utf8')).trim().split('\n')).toEqual([
      'list the data directory: no',
      'list the workspaces: no',
      'read its pid file: no',
      'read its log: no',
      'list the conversations: no',
      'read its conversation: yes',
      'write its workspace: yes',
      `home: ${workspace}`,
    ]);
    expect(await mode(workspace)).toEqual({ mode: 0o700, uid: nobody });
    expect(await mode(join(h.dataDir, 'workspaces'))).toEqual({ mode: 0o711, uid: 0 });
    expect(await mode(join(h.dataDir, 'pids'))).toEqual({ mode: 0o700, uid: 0 });
    expect(await mode(join(h.dataDir, 'pids', `${h.taskId}.json`))).toEqual({ mode: 0o600, uid: 0 });
    expect(await mode(join(h.dataDir, 'logs'))).toEqual({ mode: 0o700, uid: 0 });
    expect(await mode(join(h.dataDir, 'logs', `${h.taskId}.log`))).toEqual({ mode: 0o600, uid: 0 });
    expect(await mode(join(h.dataDir, 'conversations'))).toEqual({ mode: 0o711, uid: 0 });
    expect(await mode(join(h.dataDir, 'conversations', `${h.taskId}.json`))).toEqual({ mode: 0o600, uid: nobody });
    // The data directory gained search for others (to reach the workspace), not read.
    expect((await mode(h.dataDir)).mode & 0o007).toBe(0o001);
  });

  it('ends every process of the agent at a stop: a setsid child and a daemonised grandchild with a scrubbed environment', async () => {
    const command = [
      'setsid sleep 1001 & echo $! > setsid.pid',
      // Double fork: the grandchild, in a session of its own and without HIATUS_TASK_ID, is left to init.
      `setsid sh -c 'env -i /bin/sleep 1002 & echo $! > daemon.pid'`,
      `exec ${sh(node)} ${sh(demoAgent)}`,
    ].join('; ');
    const { pid } = await start({ command });
    const workspace = join(h.dataDir, 'workspaces', h.taskId);
    const child = Number(await readFile(join(workspace, 'setsid.pid'), 'utf8'));
    const daemon = Number(await readFile(join(workspace, 'daemon.pid'), 'utf8'));
    for (const other of [child, daemon]) expect(await running(other)).toBe(true);
    // Neither is in the agent's group; the daemon does not carry the task's id either.
    expect(await processesOfTask(h.taskId)).not.toContain(daemon);
    expect(await readFile(`/proc/${daemon}/environ`, 'utf8')).toBe('');
    const cgroup = (await readFile(`/proc/${daemon}/cgroup`, 'utf8')).match(/^0::(.*)$/m)?.[1];
    expect(cgroup).toMatch(new RegExp(`/hiatus-agents/${h.taskId}\\.[0-9a-f]{12}$`));

    await processDriver.run(h.spec({ transition: 'stop', settings: { command } }), h.ctx);
    for (const gone of [pid, child, daemon]) expect(await running(gone)).toBe(false);
    expect(existsSync(join('/sys/fs/cgroup/unified', cgroup!)) || existsSync(join('/sys/fs/cgroup', cgroup!))).toBe(
      false,
    );
  });

  it('stops, at reconcile, an agent whose pid file a crash never wrote (its cgroup says it runs)', async () => {
    const { pid } = await start({ command: [node, demoAgent] });
    await unlink(join(h.dataDir, 'pids', `${h.taskId}.json`));
    expect(await processDriver.reconcile(() => false, h.ctx)).toEqual([h.taskId]);
    expect(await running(pid)).toBe(false);
  });

  describe('with HIATUS_AGENT_USER=1234:5678', () => {
    withAgentUser('1234:5678');
    it('runs the agent as that uid and gid', async () => {
      const { pid } = await start({ command: [node, demoAgent] });
      expect(await idsOf(pid)).toEqual({ uid: 1234, gid: 5678 });
      expect(await mode(join(h.dataDir, 'workspaces', h.taskId))).toEqual({ mode: 0o700, uid: 1234 });
    });
  });

  describe('with HIATUS_AGENT_USER=200000-200002 (a uid of its own per task)', () => {
    withAgentUser('200000-200002');
    it("keeps agents apart: one can neither read the other's workspace or environment nor signal it; a delete gives the uid back", async () => {
      const first = await start({ command: [node, demoAgent] });
      const firstWorkspace = join(h.dataDir, 'workspaces', h.taskId);
      const can = (what: string, test: string) =>
        `if ${test} >/dev/null 2>&1; then echo "${what}: yes"; else echo "${what}: no"; fi`;
      const probe = [
        can("list the other's workspace", 'ls "$OTHER_WORKSPACE"'),
        can("read the other's environment", 'cat /proc/$OTHER_PID/environ'),
        can('signal the other', 'kill -0 $OTHER_PID'),
        can('signal itself', 'kill -0 $$'),
      ].join('; ');
      const second = h.newTaskId();
      const settings = {
        command: `{ ${probe}; } > probe.txt; exec ${sh(node)} ${sh(demoAgent)}`,
        env: { OTHER_WORKSPACE: firstWorkspace, OTHER_PID: String(first.pid) },
      };
      const other = (await processDriver.run(h.spec({ taskId: second, settings }), h.ctx)) as { pid: number };
      const [a, b] = [await idsOf(first.pid), await idsOf(other.pid)];
      expect(a.uid).not.toBe(b.uid);
      for (const ids of [a, b]) {
        expect(ids.uid).toBeGreaterThanOrEqual(200000);
        expect(ids.uid).toBeLessThanOrEqual(200002);
        expect(ids.gid).toBe(ids.uid);
      }
      const seen = await readFile(join(h.dataDir, 'workspaces', second, 'probe.txt'), 'utf8');
      expect(seen.trim().split('\n')).toEqual([
        "list the other's workspace: no",
        "read the other's environment: no",
        'signal the other: no',
        'signal itself: yes',
      ]);
      expect(await mode(firstWorkspace)).toEqual({ mode: 0o700, uid: a.uid });

      // A task keeps its uid from start to start (its files are that uid's); a delete frees it.
      const again = await start({ command: [node, demoAgent] });
      expect((await idsOf(again.pid)).uid).toBe(a.uid);
      await processDriver.run(h.spec({ transition: 'delete', settings: { command: [node, demoAgent] } }), h.ctx);
      expect(existsSync(join(h.dataDir, 'uids', 'by-uid', String(a.uid)))).toBe(false);
      expect(existsSync(join(h.dataDir, 'uids', 'by-task', h.taskId))).toBe(false);
      expect(existsSync(join(h.dataDir, 'uids', 'by-uid', String(b.uid)))).toBe(true);
    });
  });

  describe('with HIATUS_AGENT_USER=root', () => {
    withAgentUser('root');
    it('runs the agent as root, as before (the built-in provisioner warns)', async () => {
      const { pid } = await start({ command: [node, demoAgent] });
      expect(await idsOf(pid)).toEqual({ uid: 0, gid: 0 });
      expect(await agentSeparationWarning(h.dataDir)).toBe(
        "the process driver runs agents as root (HIATUS_AGENT_USER=root): an agent can read this process's environment through /proc",
      );
    });
  });

  describe('an agent the agent user cannot run', () => {
    let hidden: string;
    let script: string;
    beforeAll(async () => {
      hidden = await mkdtemp(join(tmpdir(), 'hiatus-hidden-')); // 0700, root's
      script = join(hidden, 'agent.mjs');
      await copyFile(demoAgent, script);
    });
    afterAll(() => rm(hidden, { recursive: true, force: true }));

    it('fails with a sentence naming what it cannot read when the user was chosen, leaving nothing behind', async () => {
      process.env.HIATUS_AGENT_USER = 'nobody';
      const failure = start({ command: [node, script] });
      await expect(failure).rejects.toThrow(
        `the agent user nobody (uid 65534) cannot read ${script}, which the agent command names: make it and every directory above it readable by that user, or set HIATUS_AGENT_USER to a user that can`,
      );
      expect(await processesOfTask(h.taskId)).toEqual([]);
      expect(existsSync(join(h.dataDir, 'pids', `${h.taskId}.json`))).toBe(false);

      process.env.HIATUS_AGENT_USER = 'no-such-user-of-hiatus';
      await expect(start({ command: [node, demoAgent] })).rejects.toThrow(
        'HIATUS_AGENT_USER names no user of this machine: no-such-user-of-hiatus',
      );
    });

    it('falls back to root with a warning when the user is only the default', async () => {
      delete process.env.HIATUS_AGENT_USER;
      const logged: string[] = [];
      const ctx = { ...h.ctx, log: (msg: string) => logged.push(msg) };
      const { pid } = (await processDriver.run(h.spec({ settings: { command: [node, script] } }), ctx)) as {
        pid: number;
      };
      expect(await idsOf(pid)).toMatchObject({ uid: 0 });
      expect(logged).toContainEqual(
        `warning: the agent user nobody (uid 65534) cannot read ${script}, which the agent command names: make it and every directory above it readable by that user, or set HIATUS_AGENT_USER to a user that can; the agent runs as the provisioner's own user instead, beside its secrets (set HIATUS_AGENT_USER to make this an error)`,
      );
    });

    it('is foreseen at start by the built-in provisioner for a data directory nobody can reach', async () => {
      delete process.env.HIATUS_AGENT_USER;
      const dataDir = join(hidden, 'provisioner');
      expect(await agentSeparationWarning(dataDir)).toBe(
        `the agent user nobody (uid 65534) cannot reach the data directory ${dataDir} (${hidden} is not searchable by it), so the process driver runs agents as this process's own user, whose environment they can read through /proc`,
      );
      expect(await agentSeparationWarning(h.dataDir)).toBeUndefined();
    });
  });
});

/** A shell command that prints its parent's pid and every environment it can read (`read: <file>` after each), then runs the demo agent. */
function procProbe(alsoTry: number[]): string {
  return [
    'echo "parent: $PPID"',
    `for f in /proc/$PPID/environ /proc/1/environ ${alsoTry.map((pid) => `/proc/${pid}/environ`).join(' ')} /proc/[0-9]*/environ; do`,
    '  if tr "\\0" "\\n" < "$f" 2>/dev/null; then echo "read: $f"; fi',
    'done',
    `exec ${sh(node)} ${sh(demoAgent)}`,
  ].join('\n');
}

/** Runs a task of a `procProbe` template through `admin` until active; answers what the probe printed and the agent's pid. */
async function runProbe(
  admin: ReturnType<typeof apiClient>,
  probe: string,
  dataDir: string,
): Promise<{ seen: string; agent: number; taskId: string }> {
  await admin.templates.create.mutate({ name: 'proc-probe', driver: 'process', settings: { command: probe } });
  const { task } = await admin.tasks.create.mutate({ name: 'probe', prompt: 'look around', template: 'proc-probe' });
  const active = await eventually(async () => {
    const got = await admin.tasks.get.query({ id: task.id });
    expect(got.status).toBe('active');
    return got;
  });
  expect(await getJson(`${active.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });
  const [agent] = await processesOfTask(task.id);
  expect(await idsOf(agent!)).toMatchObject({ uid: nobody });
  const seen = await readFile(join(dataDir, 'logs', `${task.id}.log`), 'utf8');
  return { seen, agent: agent!, taskId: task.id };
}

/** The probe's parent was `parent`; it read its own environment, not the parent's nor init's, and no secret shows. */
function expectNothingOf(seen: string, parent: number, agent: number, secrets: string[]): void {
  expect(seen).toContain(`parent: ${parent}`);
  const read = seen.split('\n').filter((line) => line.startsWith('read: '));
  expect(read).not.toContain(`read: /proc/${parent}/environ`);
  expect(read).not.toContain('read: /proc/1/environ');
  expect(read).toContain(`read: /proc/${agent}/environ`); // its own, to show the probe reads what it may
  for (const secret of secrets) expect(seen).not.toContain(secret);
}

// The issue's finding, end to end: a template whose command reads /proc/$PPID/environ printed the
// server's DATABASE_URL and HIATUS_ADMIN_TOKEN. Here the server runs as root with its built-in
// provisioner, and the agent, run as nobody, tries its parent's, init's and every process's environment.
describe.runIf(root && postgresServerUrl())('an agent of a server run by root', () => {
  const adminToken = `isolation-admin-${randomBytes(16).toString('hex')}`;
  let database: TestDatabase;
  let server: ServerProcess;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hiatus-isolation-'));
    await chmod(dir, 0o711); // the agent user must reach the data directory inside
    database = await createTestDatabase('postgres');
    server = await startServerProcess({
      ...databaseEnv(database),
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
      HIATUS_PROVISIONER_DIR: join(dir, 'provisioner'),
      HIATUS_PROVISIONER_POLL_MS: '100',
    });
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    await database?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("reads none of the server's secrets through /proc", async () => {
    const secrets = [adminToken, databaseEnv(database).DATABASE_URL!];
    // The secrets are there to be found: root (this test) reads them in the server's environment.
    const serverEnv = await environOf(server.pid);
    expect(serverEnv).toMatchObject({ HIATUS_ADMIN_TOKEN: adminToken, DATABASE_URL: secrets[1] });

    const admin = apiClient(server.url, adminToken);
    const { seen, agent, taskId } = await runProbe(admin, procProbe([server.pid]), join(dir, 'provisioner'));
    expectNothingOf(seen, server.pid, agent, secrets); // the server itself was its parent
    // Nothing warned at start: the agents are kept apart from this server's secrets.
    expect(server.lines.filter((line) => String(line.msg).startsWith('built-in provisioner:'))).toEqual([]);
    await admin.tasks.pause.mutate({ id: taskId });
    await eventually(async () => expect(await processesOfTask(taskId)).toEqual([]));
  }, 120_000);

  it('warns at start, in a server whose agents would run beside its secrets', async () => {
    const exposed = await startServerProcess({
      ...databaseEnv(database),
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
      HIATUS_PROVISIONER_DIR: join(dir, 'exposed'),
      HIATUS_AGENT_USER: 'root',
    });
    try {
      await eventually(async () =>
        expect(exposed.lines).toContainEqual(
          expect.objectContaining({
            level: 40,
            msg: "built-in provisioner: the process driver runs agents as root (HIATUS_AGENT_USER=root): an agent can read this process's environment through /proc. Run agents with hiatus-provisioner instead (HIATUS_BUILTIN_PROVISIONER=false here), which holds only its provisioner key, or run this server as root with HIATUS_AGENT_USER",
          }),
        ),
      );
    } finally {
      await exposed.stop();
    }
  }, 120_000);
});

describe.runIf(root && postgresServerUrl())('an agent of hiatus-provisioner run by root', () => {
  let running: TestServer;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hiatus-isolation-daemon-'));
    await chmod(dir, 0o711); // the agent user must reach the data directory inside
    running = await startTestServer('postgres', { HIATUS_BUILTIN_PROVISIONER: 'false' });
  }, 120_000);

  afterAll(async () => {
    await killEveryDaemon();
    await running?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("reads neither the daemon's key nor anything else of its environment through /proc", async () => {
    const admin = apiClient(running.server.url, running.adminToken);
    const { key } = await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'isolated' });
    const password = `daemon-secret-${randomBytes(16).toString('hex')}`;
    const dataDir = join(dir, 'provisioner');
    const daemon = startDaemon(['--url', running.server.url, '--data-dir', dataDir, '--wait-ms', '1000'], {
      HIATUS_TOKEN: key,
      PGPASSWORD: password,
    });
    await daemon.waitFor((line) => line.msg === 'reconciled');
    // The secrets are there to be found: root (this test) reads them in the daemon's environment.
    expect(await environOf(daemon.pid)).toMatchObject({ HIATUS_TOKEN: key, PGPASSWORD: password });

    const { seen, agent, taskId } = await runProbe(admin, procProbe([daemon.pid]), dataDir);
    expectNothingOf(seen, daemon.pid, agent, [key, password]); // the daemon itself was its parent
    await admin.tasks.pause.mutate({ id: taskId });
    await eventually(async () => expect(await processesOfTask(taskId)).toEqual([]));
    daemon.signal('SIGTERM');
    expect(await daemon.exited).toBe(0);
  }, 120_000);
});
