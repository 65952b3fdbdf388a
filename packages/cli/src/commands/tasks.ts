import type { HiatusClient, Task } from '@hiatus/client';
import type { Command } from 'commander';
import { integer, oneOf, parameter } from '../arguments.ts';
import { CliError } from '../exit-codes.ts';
import { followLogs, printLogs } from '../logs.ts';
import { formatBytes, formatSeconds, formatTime, note, say, sayJson, table, wantsJson } from '../output.ts';
import { readStdin } from '../prompt.ts';
import type { Connection } from '../session.ts';
import { withSpinner } from '../spinner.ts';
import { buildReasons, taskDetails, taskName, taskStatuses, taskTable } from '../task-view.ts';

/** `hiatus tasks …`: list, create, read, change, pause, resume, keep alive, delete, talk to and follow tasks. */
export function addTaskCommands(program: Command, connection: Connection): void {
  const tasks = program
    .command('tasks')
    .description('list, create, change, pause, resume, keep alive, delete, message and follow tasks')
    .addHelpText(
      'after',
      `
Examples:
  hiatus tasks ls --status paused
  hiatus tasks create fix-ci --prompt "Make CI green" --template claude --param repo=https://example.com/app.git --wait
  hiatus tasks pause <id>          waits for the workspace to stop
  hiatus tasks update <id> --idle-timeout 1800    auto-pause after 30 minutes idle
  hiatus tasks keep-alive <id> --for 7200         no auto-pause for the next two hours
  hiatus tasks logs <id> -f        follows the live log, then the snapshot once the task pauses`,
    );

  tasks
    .command('ls')
    .alias('list')
    .description('tasks newest first: status, paused since, reason of the pause')
    .option(
      '--status <status>',
      `only tasks in this status (${taskStatuses.join(', ')}; deleted ones only so)`,
      oneOf(taskStatuses),
    )
    .option('--owner <userId>', "only this user's tasks (admins)")
    .option('--limit <n>', 'tasks per page', integer(1, 200), 50)
    .option('--cursor <cursor>', 'the page after this cursor (printed after a full page)')
    .option('--all', 'every page, not just the first')
    .action(async (options, command: Command) => {
      const { client } = await connection.open();
      const items: Task[] = [];
      let cursor: string | undefined = options.cursor;
      let nextCursor: string | null;
      do {
        const page = await client.tasks.list.query({
          status: options.status,
          ownerId: options.owner,
          limit: options.limit,
          cursor,
        });
        items.push(...page.items);
        nextCursor = page.nextCursor;
        cursor = nextCursor ?? undefined;
      } while (options.all && cursor !== undefined);
      if (wantsJson(command)) return sayJson({ items, nextCursor });
      if (items.length === 0) return note('no tasks');
      say(taskTable(items));
      if (nextCursor) note(`more: hiatus tasks ls --cursor ${nextCursor} (or --all)`);
    });

  tasks
    .command('create')
    .description("create a task for an agent (--agent-url) or a template's workspace (--template)")
    .argument('<name>', "the task's name")
    .option('--prompt <text>', 'what the task is about', '')
    .option('--agent-url <url>', 'an AgentAPI agent Hiatus does not manage')
    .option('--no-send-prompt', 'with --agent-url: do not queue the prompt as its first message (it has it already)')
    .option('--template <name>', 'a template: Hiatus starts and stops its workspace')
    .option('--template-version <n>', 'that version of the template (default: the latest)', integer(1))
    .option('--param <name=value>', 'a template parameter (repeat for more)', parameter)
    .option('--idle-timeout <seconds>', "auto-pause after this long idle (default: the server's)", integer(1))
    .option('--wait', 'wait until the task is active (or failed)')
    .option('--wait-ms <ms>', 'how long --wait waits', integer(0), 120_000)
    .action(async (name: string, options, command: Command) => {
      if ((options.agentUrl === undefined) === (options.template === undefined)) {
        throw new CliError('usage', 'give either --agent-url or --template (with its --param values), not both');
      }
      if (options.agentUrl !== undefined && (options.param || options.templateVersion)) {
        throw new CliError('usage', '--param and --template-version go with --template');
      }
      if (options.template !== undefined && options.sendPrompt === false) {
        throw new CliError(
          'usage',
          "--no-send-prompt goes with --agent-url: a template's driver hands the prompt over",
        );
      }
      const { client } = await connection.open();
      const basics = { name, prompt: options.prompt, idleTimeoutSeconds: options.idleTimeout };
      const created = await client.tasks.create.mutate(
        options.template !== undefined
          ? {
              ...basics,
              template: options.template,
              templateVersion: options.templateVersion,
              parameters: options.param,
            }
          : { ...basics, agentUrl: options.agentUrl, ...(options.sendPrompt === false ? { sendPrompt: false } : {}) },
      );
      const json = wantsJson(command);
      if (!options.wait) {
        if (json) return sayJson(created);
        return say(taskDetails(created.task));
      }
      const waited = await withSpinner(`starting ${created.task.name}…`, !json, () =>
        waitForTask(
          client,
          created.task.id,
          (task) => !['pending', 'initializing'].includes(task.status),
          options.waitMs,
        ),
      );
      if (json) sayJson({ ...created, task: waited.task, settled: waited.settled });
      else say(taskDetails(waited.task));
      failIfErrored(waited.task, 'start');
      if (!waited.settled)
        note(`still ${waited.task.status}: \`hiatus tasks watch ${created.task.id}\` shows when it is up`);
    });

  tasks
    .command('get')
    .description('one task: status, pause, agent, latest build')
    .argument('<id>', "the task's id")
    .action(async (id: string, _options, command: Command) => {
      const { client } = await connection.open();
      const task = await client.tasks.get.query({ id });
      if (wantsJson(command)) sayJson(task);
      else say(taskDetails(task));
    });

  tasks
    .command('update')
    .description("change a task's agent URL (a task without a template) or idle timeout")
    .argument('<id>', "the task's id")
    .option('--agent-url <url>', 'the AgentAPI agent the task talks to from now on')
    .option('--idle-timeout <seconds>', 'auto-pause after this long idle', integer(1))
    .option('--no-idle-timeout', "clear the task's own idle timeout: the default applies")
    .action(async (id: string, options, command: Command) => {
      // Commander leaves idleTimeout undefined without either flag, false with --no-idle-timeout (null clears it).
      const idleTimeoutSeconds: number | null | undefined = options.idleTimeout === false ? null : options.idleTimeout;
      if (options.agentUrl === undefined && idleTimeoutSeconds === undefined) {
        throw new CliError('usage', 'give --agent-url, --idle-timeout or --no-idle-timeout: nothing to change');
      }
      const { client } = await connection.open();
      const task = await client.tasks.update.mutate({ id, agentUrl: options.agentUrl, idleTimeoutSeconds });
      if (wantsJson(command)) sayJson(task);
      else say(taskDetails(task));
    });

  tasks
    .command('pause')
    .description("pause an active task: its agent's history is saved, then its workspace stops")
    .argument('<id>', "the task's id")
    .option('--without-snapshot', 'pause even if the agent cannot give its history (the previous snapshot stays)')
    .option('--no-wait', 'answer once the stop is queued, without waiting for the workspace to stop')
    .option('--wait-ms <ms>', 'the longest wait for the workspace to stop', integer(0, 120_000), 30_000)
    .action(async (id: string, options, command: Command) => {
      const { client } = await connection.open();
      const json = wantsJson(command);
      const result = await withSpinner('pausing: saving the agent’s history, then stopping its workspace…', !json, () =>
        client.tasks.pause.mutate({
          id,
          withoutSnapshot: options.withoutSnapshot,
          wait: options.wait,
          waitMs: options.waitMs,
        }),
      );
      if (json) sayJson(result);
      else {
        say(`${result.task.status}: ${taskName(result.task)}`);
        say(
          result.snapshot.taken
            ? `snapshot: ${result.snapshot.messageCount} messages (${formatBytes(result.snapshot.bytes)}) taken at ${formatTime(result.snapshot.createdAt)}`
            : `snapshot: none taken (${result.snapshot.reason}); the previous one stays`,
        );
      }
      failIfErrored(result.task, 'stop');
      if (options.wait && !result.settled) {
        note(
          `still ${result.task.status} after ${options.waitMs} ms: the pause is committed; \`hiatus tasks watch ${id}\` shows when it ends`,
        );
      }
    });

  tasks
    .command('resume')
    .description('resume a paused task: its workspace starts again')
    .argument('<id>', "the task's id")
    .option('--no-wait', 'answer once the start is queued, without waiting for the agent to be up')
    .option('--wait-ms <ms>', 'the longest wait for the agent to be up', integer(0, 120_000), 30_000)
    .action(async (id: string, options, command: Command) => {
      const { client } = await connection.open();
      const json = wantsJson(command);
      const result = await withSpinner('resuming: starting the workspace…', !json, () =>
        client.tasks.resume.mutate({ id, wait: options.wait, waitMs: options.waitMs }),
      );
      if (json) sayJson(result);
      else
        say(
          `${result.task.status}: ${taskName(result.task)}${result.task.agentUrl ? `, agent at ${result.task.agentUrl}` : ''}`,
        );
      failIfErrored(result.task, 'start');
      if (options.wait && !result.settled) {
        note(
          `still ${result.task.status} after ${options.waitMs} ms: the resume is committed; \`hiatus tasks watch ${id}\` shows when it ends`,
        );
      }
    });

  tasks
    .command('keep-alive')
    .description('hold off auto-pause of a running task for a while (replaces an earlier keep-alive)')
    .argument('<id>', "the task's id")
    .option('--for <seconds>', 'how long, in seconds (default an hour, a day at most)', integer(1))
    .action(async (id: string, options, command: Command) => {
      const { client } = await connection.open();
      const result = await client.tasks.keepAlive.mutate({ id, forSeconds: options.for });
      if (wantsJson(command)) return sayJson(result);
      const left = (new Date(result.keepAliveUntil).getTime() - Date.now()) / 1000;
      say(
        `kept alive until ${formatTime(result.keepAliveUntil)} (${formatSeconds(Math.max(0, left))} from now): ${taskName(result.task)}`,
      );
    });

  tasks
    .command('delete')
    .alias('rm')
    .description('delete a task: its workspace is removed, its log with it')
    .argument('<id>', "the task's id")
    .action(async (id: string, _options, command: Command) => {
      const { client } = await connection.open();
      const result = await client.tasks.delete.mutate({ id });
      if (wantsJson(command)) sayJson(result);
      else say(`deleted: ${taskName(result.task)}`);
    });

  tasks
    .command('send')
    .description("send a message to the task's agent (from stdin when the message is - or absent)")
    .argument('<id>', "the task's id")
    .argument('[message...]', 'the message')
    .option('--resume', 'resume the task first if it is paused')
    .action(async (id: string, words: string[], options, command: Command) => {
      const text = words.length === 0 || (words.length === 1 && words[0] === '-') ? await readStdin() : words.join(' ');
      if (!text) throw new CliError('usage', 'the message is empty');
      const { client } = await connection.open();
      const json = wantsJson(command);
      const result = await withSpinner(
        options.resume ? 'sending (resuming the task if paused)…' : 'sending…',
        !json,
        () => client.tasks.send.mutate({ id, input: text, resumeIfPaused: options.resume }),
      );
      if (json) sayJson(result);
      else if (!result.queued) say(`sent to ${taskName(result.task)}`);
      else {
        const why = result.resumed ? 'the task is resuming' : 'the agent is busy or earlier messages wait';
        say(
          `queued for ${taskName(result.task)} as message ${result.messageId} (${why}): it goes once the agent is ready`,
        );
      }
    });

  tasks
    .command('cancel-message')
    .description('cancel a message queued by `tasks send`: it is never delivered')
    .argument('<id>', "the task's id")
    .argument('<messageId>', 'the id `tasks send` printed for the queued message')
    .action(async (id: string, messageId: string, _options, command: Command) => {
      const { client } = await connection.open();
      const result = await client.tasks.cancelMessage.mutate({ id, messageId });
      if (wantsJson(command)) sayJson(result);
      else say(`cancelled message ${result.messageId} at ${formatTime(result.cancelledAt)}: it will not be delivered`);
    });

  tasks
    .command('logs')
    .description(
      "the task's whole history across its agents: the earlier ones kept, the latest snapshot, live while active",
    )
    .argument('<id>', "the task's id")
    .option('-f, --follow', 'keep following: the live log, then the snapshot once the task pauses (Ctrl-C stops)')
    .option('--cursor <position>', "only entries after this position in the task's history", integer(0))
    .option('--page-size <n>', 'entries read per request', integer(1, 1000), 100)
    .option('--interval <ms>', 'how often --follow reads a live log', integer(100), 1000)
    .action(async (id: string, options, command: Command) => {
      const { client } = await connection.open();
      const logOptions = { cursor: options.cursor, pageSize: options.pageSize, json: wantsJson(command) };
      if (options.follow) await followLogs(client, id, { ...logOptions, intervalMs: options.interval });
      else await printLogs(client, id, logOptions);
    });

  tasks
    .command('watch')
    .description('print the task on every status or build change, until it is deleted (Ctrl-C stops)')
    .argument('<id>', "the task's id")
    .action(async (id: string, _options, command: Command) => {
      const { client } = await connection.open();
      const json = wantsJson(command);
      await client.tasks.get.query({ id }); // fails at once when the task is not there or the server is not
      await watchTask(client, id, (task) => {
        if (json) return sayJson(task, { line: true });
        const build = task.latestBuild;
        say(
          `${formatTime(new Date())}  ${task.status.padEnd(12)}${build ? `build #${build.buildNumber} ${build.transition} (${build.reason}) ${build.jobStatus}` : ''}`,
        );
      });
    });

  tasks
    .command('builds')
    .description("the task's builds, newest first: each start, stop and delete with its reason")
    .argument('<id>', "the task's id")
    .option('--reason <reason>', `only builds of this reason (${buildReasons.join(', ')})`, oneOf(buildReasons))
    .option('--limit <n>', 'builds per page', integer(1, 200), 50)
    .option('--cursor <n>', 'the page after this build number', integer(1))
    .action(async (id: string, options, command: Command) => {
      const { client } = await connection.open();
      const page = await client.builds.list.query({
        taskId: id,
        reason: options.reason,
        limit: options.limit,
        cursor: options.cursor,
      });
      if (wantsJson(command)) return sayJson(page);
      say(
        table(
          ['BUILD', 'TRANSITION', 'REASON', 'JOB', 'CREATED', 'COMPLETED', 'ERROR'],
          page.items.map((build) => [
            `#${build.buildNumber}`,
            build.transition,
            build.reason,
            build.jobStatus,
            formatTime(build.createdAt),
            formatTime(build.completedAt),
            build.error,
          ]),
        ),
      );
      if (page.nextCursor) note(`more: hiatus tasks builds ${id} --cursor ${page.nextCursor}`);
    });
}

/** A task whose build failed: the command failed, after printing what happened. */
function failIfErrored(task: Task, what: 'start' | 'stop'): void {
  if (task.status === 'error') {
    throw new CliError('unexpected', `the workspace's ${what} failed: ${task.latestBuild?.error ?? 'no reason given'}`);
  }
}

/** Calls `onTask` with the task now and at every change, until it is deleted or the user stops (Ctrl-C). */
function watchTask(client: HiatusClient, id: string, onTask: (task: Task) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const subscription = client.tasks.watch.subscribe(
      { id },
      {
        onData: (task) => {
          onTask(task);
          if (task.status === 'deleted') finish();
        },
        onError: finish,
      },
    );
    const stop = (): void => finish();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    function finish(error?: unknown): void {
      subscription.unsubscribe();
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (error === undefined) resolve();
      else reject(error);
    }
  });
}

/** Waits (through `tasks.watch`) until `done(task)`, or `timeoutMs`: the task then, and whether it was done. */
function waitForTask(
  client: HiatusClient,
  id: string,
  done: (task: Task) => boolean,
  timeoutMs: number,
): Promise<{ task: Task; settled: boolean }> {
  return new Promise((resolve, reject) => {
    let last: Task | undefined;
    const timer = setTimeout(async () => {
      subscription.unsubscribe();
      try {
        resolve({ task: last ?? (await client.tasks.get.query({ id })), settled: false });
      } catch (error) {
        reject(error);
      }
    }, timeoutMs);
    const subscription = client.tasks.watch.subscribe(
      { id },
      {
        onData: (task) => {
          last = task;
          if (!done(task)) return;
          clearTimeout(timer);
          subscription.unsubscribe();
          resolve({ task, settled: true });
        },
        onError: (error) => {
          clearTimeout(timer);
          subscription.unsubscribe();
          reject(error);
        },
      },
    );
  });
}
