import { setTimeout as sleep } from 'node:timers/promises';
import { AgentError } from '../agentapi/client.ts';
import type { App } from '../app.ts';
import type { Task } from '../db/tasks.ts';
import { findTemplateById } from '../db/templates.ts';
import { agentTrust } from '../domain/agent-trust.ts';

const pollMs = 200;

/**
 * The pre-pause notice of the task's template, if it has one: waits for the agent to be idle,
 * sends it the message ("save your work: this task will pause"), and waits until it reports
 * `stable` again, so its last answer is in the snapshot. All within the notice's deadline, and
 * best effort: an agent that cannot take the message is paused all the same.
 * Returns whether the notice was delivered.
 */
export async function givePrePauseNotice(app: Pick<App, 'agent' | 'db'>, task: Task): Promise<boolean> {
  const template = task.templateId ? await findTemplateById(app.db, task.templateId) : undefined;
  const notice = template?.prePauseNotice;
  if (!notice) return false;
  const agent = app.agent(task.agentUrl, agentTrust(task));
  const deadline = Date.now() + notice.waitSeconds * 1000;
  const untilStable = async () => {
    while (Date.now() < deadline) {
      if ((await agent.status()) === 'stable') return true;
      await sleep(pollMs);
    }
    return false;
  };
  try {
    if (!(await untilStable())) return false;
    if (!(await agent.sendMessage(notice.message))) return false;
    await sleep(pollMs); // let it start working on the message before looking again
    await untilStable();
    return true;
  } catch (error) {
    if (error instanceof AgentError) return false;
    throw error;
  }
}
