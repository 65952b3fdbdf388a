import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../../../apps/server/src/config.ts';
import type { RunningServer } from '../../../apps/server/src/server.ts';
import { postgresServerUrl } from '../../../apps/server/test/databases.ts';
import { FakeAgent } from '../../../apps/server/test/fake-agent.ts';
import { startTestServer, type TestServer, testAdminToken } from '../../../apps/server/test/test-server.ts';

const run = promisify(execFile);
const clientDir = path.join(repoRoot, 'packages/client');
const tsc = path.join(repoRoot, 'node_modules/.bin/tsc');
const tsx = path.join(repoRoot, 'node_modules/.bin/tsx');

/**
 * The published package as a stranger gets it: packed, installed from the tarball into a project
 * outside this workspace, typechecked there, and run against a live server on PostgreSQL.
 */
describe.runIf(postgresServerUrl())('@hiatus/client, packed and installed outside the workspace', () => {
  let project: string;
  let running: TestServer;
  let server: RunningServer;
  let agent: FakeAgent;

  beforeAll(async () => {
    project = await mkdtemp(path.join(os.tmpdir(), 'hiatus-sdk-consumer-'));
    await run('pnpm', ['pack', '--pack-destination', project], { cwd: clientDir });
    const tarball = (await readdir(project)).find((f) => f.endsWith('.tgz'))!;
    await writeFile(
      path.join(project, 'package.json'),
      JSON.stringify({
        name: 'consumer',
        private: true,
        type: 'module',
        dependencies: { '@hiatus/client': `file:./${tarball}`, '@types/node': '^20.19.0' },
      }),
    );
    await writeFile(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          types: ['node'],
          skipLibCheck: false,
        },
        files: ['src/consumer.ts'],
      }),
    );
    await mkdir(path.join(project, 'src'));
    for (const file of ['consumer.ts', 'misuse.ts']) {
      await copyFile(path.join(clientDir, 'test/fixtures', file), path.join(project, 'src', file));
    }
    await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: project });

    running = await startTestServer('postgres', { HIATUS_PROVISIONER_POLL_MS: '100' });
    server = running.server;
    agent = await new FakeAgent().start();
    agent.say(7, 120);
  }, 180_000); // a declaration build, a pack and an npm install: under a minute, longer on a busy 2-core machine

  afterAll(async () => {
    await agent?.stop();
    await running?.close();
    if (project) await rm(project, { recursive: true, force: true });
  });

  it('ships ESM and declarations that import nothing from this workspace', async () => {
    const installed = path.join(project, 'node_modules/@hiatus/client');
    const manifest = JSON.parse(await readFile(path.join(installed, 'package.json'), 'utf8'));
    expect(Object.keys(manifest.dependencies ?? {})).not.toContain('@hiatus/server');
    expect(manifest).toMatchObject({ sideEffects: false, publishConfig: { access: 'public', provenance: true } });
    expect((await readdir(installed)).sort()).toEqual(['CHANGELOG.md', 'README.md', 'dist', 'package.json']);
    const files = await readdir(path.join(installed, 'dist'));
    expect(files.sort()).toEqual(['index.d.mts', 'index.mjs']);
    for (const file of files) {
      const text = await readFile(path.join(installed, 'dist', file), 'utf8');
      const imported = [...text.matchAll(/^(?:import|export)[^;]*?from\s+"([^"]+)"/gm)].map((m) => m[1]);
      expect(imported.filter((spec) => spec?.startsWith('@hiatus/') || spec?.startsWith('.'))).toEqual([]);
    }
  });

  it('typechecks a consumer that uses every procedure', async () => {
    await expect(run(tsc, ['-p', 'tsconfig.json'], { cwd: project })).resolves.toBeDefined();
  });

  it('refuses to typecheck a consumer that misuses procedures', async () => {
    const misuse = await run(
      tsc,
      ['--noEmit', '--strict', '--module', 'NodeNext', '--target', 'ES2022', '--types', 'node', 'src/misuse.ts'],
      {
        cwd: project,
      },
    ).then(
      () => 'typechecked',
      (error: { stdout: string }) => error.stdout,
    );
    expect(misuse).toMatch(/misuse\.ts\(\d+,\d+\): error TS2322: Type 'number' is not assignable to type 'string'/);
    expect(misuse).toMatch(/Property '(agentUrl|template)' is missing/); // a task names its agent or its template
    expect(misuse).toMatch(/misuse\.ts\(\d+,\d+\): error TS1360/);
  });

  it('runs the consumer against a live server: the whole lifecycle, refusals with typed codes', async () => {
    const { stdout } = await run(tsx, ['src/consumer.ts'], {
      cwd: project,
      env: { ...process.env, HIATUS_URL: server.url, HIATUS_TOKEN: testAdminToken, AGENT_URL: agent.url },
    });
    const seen = JSON.parse(stdout.trim().split('\n').at(-1)!);
    expect(seen.seen).toContain('paused');
    expect(seen.firstPause).toEqual({ taken: true, status: 'pausing' });
    expect(seen.resumeWaited).toEqual({ status: 'active', settled: true });
    expect(seen.updatedIdle).toBe(null);
    expect(seen.pages.map(([id]: [number]) => id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(seen.pages[7]).toEqual([7, 'input']);
    expect(seen.snapshots).toEqual({ first: 8, second: 9, format: 'agentapi' });
    expect(seen.reasons).toEqual(['task_manual_pause', 'task_resume', 'task_manual_pause', 'initiator']);
    expect(seen.onlyResumes).toBe(1);
    expect(seen.pushed).toBe(false);
    expect(seen.refused).toEqual({
      otherMember: 'NOT_FOUND',
      otherMemberPause: 'NOT_FOUND',
      forgedKey: 'UNAUTHORIZED',
      noSuchTask: 'NOT_FOUND',
      badId: 'BAD_REQUEST',
      badUrl: 'BAD_REQUEST',
      pauseTwice: 'CONFLICT',
      memberCreatesUser: 'FORBIDDEN',
      workspaceKeyWrites: 'FORBIDDEN',
      memberAudit: 'FORBIDDEN',
      memberProvisioner: 'FORBIDDEN',
    });
    expect(seen.auditActions).toEqual([
      'task.create',
      'task.pause',
      'task.resume',
      'task.update',
      'task.pause',
      // Bob's get and pause of alice's task: a refusal is recorded once a minute per user and task.
      'task.access_denied',
    ]);
    expect(seen.telemetryBuckets).toBeGreaterThan(0);
    expect(seen.deleted).toBe('deleted');
    expect(seen.snapshotAfterDelete).toBe('NOT_FOUND');
    expect(seen.revokedKey).toBe('UNAUTHORIZED');
    // The task's lifecycle events, first to last (the consumer pauses twice and resumes once).
    expect(seen.eventTypes.at(0)).toBe('task.created');
    expect(seen.eventTypes.at(-1)).toBe('task.deleted');
    expect(seen.eventTypes.filter((type: string) => type === 'task.pausing')).toHaveLength(2);
    expect(seen.eventTypes).toContain('task.resuming');
    expect(seen.createdName).toBe('fix-ci');
    expect(seen.forged).toBe('refused');
  });
});
