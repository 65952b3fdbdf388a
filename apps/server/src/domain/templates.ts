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

/**
 * The provisioner tags a template's builds need, such as `{ host: 'a' }`: a job goes only to a
 * provisioner whose tags include every one of them (more are fine); a template without tags goes to
 * any provisioner. A provisioner without tags takes only untagged templates' jobs.
 */
export type ProvisionerTags = Record<string, string>;

/**
 * What a provisioner tag may be: a name of letters, digits, ".", "_", "/" and "-" (up to 64,
 * starting with a letter or digit), a value of 1 to 128 characters without spaces, "," or "=" (so
 * `--tag host=a` and `host=a,gpu=true` can say any of them); at most 20 tags.
 */
export const provisionerTagRules = Object.freeze({
  name: /^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$/,
  value: /^[^\s,=]{1,128}$/,
  max: 20,
});

/**
 * `host=a,gpu=true` → `{ host: 'a', gpu: 'true' }`, as `HIATUS_PROVISIONER_TAGS` and
 * `HIATUS_BUILTIN_PROVISIONER_TAGS` say them; an empty text is no tags. Throws `bad_input` naming
 * the item that is no tag, a name given twice, or too many.
 */
export function parseTagList(text: string): ProvisionerTags {
  const tags: ProvisionerTags = {};
  if (text.trim() === '') return tags;
  for (const item of text.split(',').map((part) => part.trim())) {
    const at = item.indexOf('=');
    const [name, value] = at < 0 ? [item, ''] : [item.slice(0, at), item.slice(at + 1)];
    if (!provisionerTagRules.name.test(name) || !provisionerTagRules.value.test(value)) {
      throw new HiatusError('bad_input', `${JSON.stringify(item)} is not a tag (name=value, such as host=a)`);
    }
    if (Object.hasOwn(tags, name)) throw new HiatusError('bad_input', `the tag ${name} is given twice`);
    tags[name] = value;
  }
  if (Object.keys(tags).length > provisionerTagRules.max) {
    throw new HiatusError('bad_input', `at most ${provisionerTagRules.max} tags`);
  }
  return tags;
}

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

/*
 * A template's `settings.env` is write-only: its values go to the driver with each build job and to
 * no reader. Reads show `settings` without `env` and the names in `envNames`; an update merges the
 * env it gives into the stored one by name, so secrets need not be sent again to be kept.
 */

/** Which names of a template's environment an update added, gave a new value or removed. */
export type EnvChanges = { added: string[]; changed: string[]; removed: string[] };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function envOf(settings: unknown): Record<string, unknown> {
  return isRecord(settings) && isRecord(settings.env) ? settings.env : {};
}

/** The names of a template's `settings.env`, sorted: all a read shows of it. */
export function envNames(settings: unknown): string[] {
  return Object.keys(envOf(settings)).sort();
}

/** A template's settings as reads show them: without `env` (see `envNames`). */
export function settingsWithoutEnv(settings: unknown): unknown {
  if (!isRecord(settings) || !('env' in settings)) return settings;
  const { env: _env, ...rest } = settings;
  return rest;
}

/**
 * The settings an update saves: `given`, its `env` merged by name into the stored one. A name given
 * a string is set, a name given `null` is removed, a name not given keeps its stored value; `given`
 * without `env` keeps the whole stored env. Anything else under `env` is left for the driver to refuse.
 *
 * @example mergeEnv({ command: 'a', env: { KEY: 's', OLD: 'x' } }, { command: 'b', env: { OLD: null } })
 * // { command: 'b', env: { KEY: 's' } }
 */
export function mergeEnv(stored: unknown, given: unknown): unknown {
  if (!isRecord(given)) return given;
  if (given.env !== undefined && !isRecord(given.env)) return given;
  // Without a prototype, a name such as `__proto__` is a name like any other.
  const env: Record<string, unknown> = Object.assign(Object.create(null), envOf(stored));
  for (const [name, value] of Object.entries(given.env ?? {})) {
    if (value === null) delete env[name];
    else env[name] = value;
  }
  const { env: _given, ...rest } = given;
  return Object.keys(env).length > 0 ? { ...rest, env } : rest;
}

/** The names whose values differ between two versions' settings (never the values). */
export function envChanges(before: unknown, after: unknown): EnvChanges {
  const old = envOf(before);
  const now = envOf(after);
  const names = (record: Record<string, unknown>, keep: (name: string) => boolean) =>
    Object.keys(record).filter(keep).sort();
  return {
    added: names(now, (name) => !Object.hasOwn(old, name)),
    changed: names(now, (name) => Object.hasOwn(old, name) && old[name] !== now[name]),
    removed: names(old, (name) => !Object.hasOwn(now, name)),
  };
}
