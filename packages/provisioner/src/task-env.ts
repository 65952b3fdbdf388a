import type { BuildSpec } from './driver.ts';

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
 * template cannot pass one task off as another.
 */
export function taskEnv(spec: BuildSpec, templateEnv: Record<string, string> = {}): NodeJS.ProcessEnv {
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
  return env;
}
