import { HiatusError } from './errors.ts';

/** A parameter a template declares; a task gives its value at creation. */
export type TemplateParameter = {
  name: string;
  description?: string;
  /** Used when the task gives no value; a parameter without one is required. */
  default?: string;
  /** A regular expression the whole value must match. */
  pattern?: string;
};

/** Sent to the agent before a pause takes its snapshot, so its last answer is in it. */
export type PrePauseNotice = { message: string; waitSeconds: number };

/**
 * What a resume of a template's tasks does beyond starting the agent again (HIATUS_START=resume,
 * the previous conversation in the file HIATUS_PREVIOUS_CONVERSATION names).
 */
export type ResumeSetting = {
  /** Run on a resume instead of the first start's command (`claude --continue` over the kept workdir). */
  command?: string | string[];
  /** Queue a recap first in the inbox: the original prompt and the last exchanges before the pause. */
  message?: boolean;
  /** The recap's size limit in UTF-8 bytes; the service default when absent. */
  messageMaxBytes?: number;
};

/**
 * The values a task runs with: each declared parameter's given value or default. Unknown names,
 * missing required values and values that do not match their pattern are refused, all at once.
 */
export function resolveParameters(
  declared: readonly TemplateParameter[],
  given: Readonly<Record<string, string>>,
): Record<string, string> {
  const problems: string[] = [];
  const known = new Set(declared.map((p) => p.name));
  for (const name of Object.keys(given)) if (!known.has(name)) problems.push(`unknown parameter "${name}"`);
  const values: Record<string, string> = {};
  for (const parameter of declared) {
    const value = given[parameter.name] ?? parameter.default;
    if (value === undefined) {
      problems.push(`parameter "${parameter.name}" is required`);
      continue;
    }
    if (parameter.pattern !== undefined && !new RegExp(`^(?:${parameter.pattern})$`).test(value)) {
      problems.push(`parameter "${parameter.name}" must match ${parameter.pattern}`);
      continue;
    }
    values[parameter.name] = value;
  }
  if (problems.length > 0) throw new HiatusError('bad_input', problems.join('; '));
  return values;
}
