/**
 * A task's agent URL is trusted when Hiatus's own driver reported it: the task has a template. A
 * user's URL is held to the outbound address policy at every connection; a trusted one is not.
 */
export function agentTrust(task: { templateId: string | null }): { trusted: boolean } {
  return { trusted: task.templateId !== null };
}
