import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { conversationDir, conversationFilePath, folder, type Owner } from './data-dir.ts';
import { type BuildSpec, startOf } from './driver.ts';

/** `repo-url` → `HIATUS_PARAM_REPO_URL`: upper case, anything a shell variable cannot hold becomes `_`. */
export function parameterVariable(name: string): string {
  return `HIATUS_PARAM_${name.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}`;
}

/**
 * The provisioner's own secrets, never handed to an agent: a server running the built-in
 * provisioner has its database URL and admin key in its environment, a daemon its API key.
 */
const secret = /^(HIATUS_|DATABASE_|PG(PASSWORD|USER|HOST|DATABASE|PASSFILE)$)/;

/** The provisioner's environment without its secrets. */
function inheritedEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !secret.test(name)));
}

/**
 * The environment a driver's command runs with: the provisioner's own (less its secrets), then
 * the template's `env`, then what Hiatus knows about the build. Hiatus's variables come last so a
 * template cannot pass one task off as another. A start says which it is (`HIATUS_START`: `first`
 * or `resume`); a resume also names its previous conversation's file (`conversationFile`, from
 * `writeConversationFile`) in `HIATUS_PREVIOUS_CONVERSATION`.
 */
export function taskEnv(
  spec: BuildSpec,
  templateEnv: Record<string, string> = {},
  conversationFile?: string,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...inheritedEnv(),
    ...templateEnv,
    HIATUS_TASK_ID: spec.taskId,
    HIATUS_WORKSPACE_ID: spec.workspaceId,
    HIATUS_BUILD_ID: spec.buildId,
    HIATUS_TRANSITION: spec.transition,
    HIATUS_REASON: spec.reason,
    HIATUS_PROMPT: spec.prompt,
    HIATUS_PARAMETERS: JSON.stringify(spec.parameters),
  };
  for (const [name, value] of Object.entries(spec.parameters)) env[parameterVariable(name)] = value;
  const previous = spec.previousOutputs?.agentUrl;
  if (typeof previous === 'string') env.HIATUS_PREVIOUS_AGENT_URL = previous;
  else delete env.HIATUS_PREVIOUS_AGENT_URL;
  const start = startOf(spec);
  if (start) env.HIATUS_START = start;
  else delete env.HIATUS_START;
  if (conversationFile !== undefined) env.HIATUS_PREVIOUS_CONVERSATION = conversationFile;
  else delete env.HIATUS_PREVIOUS_CONVERSATION;
  return env;
}

/**
 * Hands a resume its previous conversation: writes it to the task's conversation file
 * (`conversations/<taskId>.json` under the data directory) as a JSON array of AgentAPI messages,
 * mode 0600, owned by `owner` (the agent user) when given, replacing the whole file at once
 * (written beside it, then renamed), and answers the path. The folder is 0700, or 0711 for an
 * agent user to reach its own file by name (and list none). A first start removes a file an
 * earlier task of that id left and answers undefined; so does a resume without a conversation
 * (a provisioner that got none to hand).
 */
export async function writeConversationFile(
  spec: BuildSpec,
  dataDir: string,
  owner?: Owner,
): Promise<string | undefined> {
  const file = conversationFilePath(dataDir, spec.taskId);
  if (startOf(spec) !== 'resume' || spec.previousConversation === undefined) {
    await removeConversationFile(dataDir, spec.taskId);
    return undefined;
  }
  await folder(conversationDir(dataDir), owner ? 0o711 : 0o700);
  const partial = `${file}.${randomBytes(6).toString('hex')}.partial`;
  const handle = await open(partial, 'w', 0o600);
  try {
    await handle.chmod(0o600); // whatever the umask, or a file the name was taken by
    if (owner) await handle.chown(owner.uid, owner.gid);
    await handle.writeFile(JSON.stringify(spec.previousConversation));
  } catch (error) {
    await handle.close();
    await rm(partial, { force: true });
    throw error;
  }
  await handle.close();
  await rename(partial, file);
  return file;
}

/** Removes the task's conversation file, if any: its task is deleted, or starts afresh. */
export async function removeConversationFile(dataDir: string, taskId: string): Promise<void> {
  await rm(conversationFilePath(dataDir, taskId), { force: true });
}
