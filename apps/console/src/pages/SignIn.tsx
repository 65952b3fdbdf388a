import { type FormEvent, type ReactElement, useId, useState } from 'react';
import { createApiClient } from '../api.ts';
import { refusalSentence } from '../refusals.ts';

/** Asks for an API key and checks it (`me`) before keeping it for the session. */
export function SignIn({ onKey }: { onKey: (key: string) => void }): ReactElement {
  const [key, setKey] = useState('');
  const [problem, setProblem] = useState<string | null>(null);
  const [checking, setChecking] = useState(false);
  const inputId = useId();
  const hintId = useId();

  const submit = async (event: FormEvent): Promise<void> => {
    event.preventDefault();
    const given = key.trim();
    if (!given) return setProblem('Enter an API key.');
    setChecking(true);
    setProblem(null);
    try {
      await createApiClient(given).me.query();
      onKey(given);
    } catch (error) {
      setProblem(refusalSentence('sign in', error));
      setChecking(false);
    }
  };

  return (
    <main id="main" className="sign-in">
      <h1>Hiatus</h1>
      <form onSubmit={submit} aria-describedby={hintId}>
        <label htmlFor={inputId}>API key</label>
        <input
          id={inputId}
          type="password"
          autoComplete="off"
          spellCheck={false}
          value={key}
          onChange={(e) => setKey(e.target.value)}
          aria-invalid={problem ? true : undefined}
          required
        />
        <p id={hintId} className="hint">
          The key is kept in this tab only, until you sign out or close it. The server printed the admin's key when it
          first started (<code>pnpm admin:key</code> mints a new one).
        </p>
        <button type="submit" disabled={checking}>
          {checking ? 'Checking…' : 'Sign in'}
        </button>
        {problem && (
          <p role="alert" className="error">
            {problem}
          </p>
        )}
      </form>
    </main>
  );
}
