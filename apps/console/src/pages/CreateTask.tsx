import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, type ReactElement, useId, useState } from 'react';
import { useTRPC } from '../api.ts';
import { refusalSentence } from '../refusals.ts';
import { navigate } from '../route.ts';

/** `, on host=a gpu=true`: the provisioner tags a template's builds need; nothing for none. */
function tagList(tags: Record<string, string>): string {
  const pairs = Object.keys(tags)
    .sort()
    .map((name) => `${name}=${tags[name]}`);
  return pairs.length > 0 ? `, on ${pairs.join(' ')}` : '';
}

/** A new task, on an agent's URL or from a template (with its parameters). */
export function CreateTask(): ReactElement {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const templates = useQuery(trpc.templates.list.queryOptions({}, { staleTime: 60_000 }));
  const [name, setName] = useState('');
  const [prompt, setPrompt] = useState('');
  const [source, setSource] = useState('');
  const [agentUrl, setAgentUrl] = useState('');
  const [sendPrompt, setSendPrompt] = useState(true);
  const [parameters, setParameters] = useState<Record<string, string>>({});
  const id = useId();
  const template = templates.data?.find((t) => t.name === source);
  const create = useMutation(
    trpc.tasks.create.mutationOptions({
      onSuccess: ({ task }) => {
        void queryClient.invalidateQueries({ queryKey: trpc.tasks.list.pathKey() });
        navigate(`/tasks/${task.id}`);
      },
    }),
  );

  const submit = (event: FormEvent): void => {
    event.preventDefault();
    const basics = { name: name.trim(), prompt };
    if (template) create.mutate({ ...basics, template: template.name, parameters });
    else create.mutate({ ...basics, agentUrl: agentUrl.trim(), ...(sendPrompt ? {} : { sendPrompt: false }) });
  };

  return (
    <details className="create">
      <summary>New task</summary>
      <form onSubmit={submit}>
        <label htmlFor={`${id}-name`}>Name</label>
        <input id={`${id}-name`} value={name} onChange={(e) => setName(e.target.value)} required maxLength={128} />
        <label htmlFor={`${id}-prompt`}>Prompt</label>
        <textarea id={`${id}-prompt`} value={prompt} onChange={(e) => setPrompt(e.target.value)} rows={3} />
        <label htmlFor={`${id}-source`}>Agent</label>
        <select id={`${id}-source`} value={source} onChange={(e) => setSource(e.target.value)}>
          <option value="">an agent at a URL</option>
          {templates.data?.map((t) => (
            <option key={t.id} value={t.name}>
              template {t.name} (v{t.version}){tagList(t.provisionerTags)}
            </option>
          ))}
        </select>
        {template ? (
          template.parameters.map((p) => (
            <div key={p.name} className="field">
              <label htmlFor={`${id}-p-${p.name}`}>{p.description ? `${p.name}: ${p.description}` : p.name}</label>
              <input
                id={`${id}-p-${p.name}`}
                value={parameters[p.name] ?? ''}
                placeholder={p.default}
                required={p.default === undefined}
                onChange={(e) => setParameters({ ...parameters, [p.name]: e.target.value })}
              />
            </div>
          ))
        ) : (
          <>
            <label htmlFor={`${id}-url`}>Agent URL</label>
            <input
              id={`${id}-url`}
              type="url"
              value={agentUrl}
              onChange={(e) => setAgentUrl(e.target.value)}
              placeholder="http://agents.internal:3284"
              required
            />
            <label htmlFor={`${id}-send-prompt`}>
              <input
                id={`${id}-send-prompt`}
                type="checkbox"
                checked={sendPrompt}
                onChange={(e) => setSendPrompt(e.target.checked)}
              />{' '}
              Queue it as the agent's first message (off: the agent has it already)
            </label>
          </>
        )}
        <button type="submit" disabled={create.isPending}>
          {create.isPending ? 'Creating…' : 'Create the task'}
        </button>
        {create.error && (
          <p role="alert" className="error">
            {refusalSentence('create', create.error)}
          </p>
        )}
      </form>
    </details>
  );
}
