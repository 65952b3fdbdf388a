import yoctoSpinner from 'yocto-spinner';

/**
 * Runs `work` with a spinner on stderr saying `text`, only where a person watches a terminal:
 * never in `--json` mode or when stderr is a file or a pipe, so scripts see nothing of it.
 */
export async function withSpinner<T>(text: string, show: boolean, work: () => Promise<T>): Promise<T> {
  if (!show || !process.stderr.isTTY) return work();
  const spinner = yoctoSpinner({ text, stream: process.stderr }).start();
  try {
    return await work();
  } finally {
    spinner.stop();
  }
}
