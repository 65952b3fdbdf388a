import { createHiatusClient, type HiatusClient } from '@hiatus/client';
import { resolveCredentials } from './credentials.ts';

/** A client for the server the user logged in to (or that the environment names). */
export type Session = { url: string; client: HiatusClient };

/** Opens the session on first use and remembers the URL, so errors can name the server. */
export class Connection {
  url: string | undefined;
  private session: Session | undefined;

  async open(): Promise<Session> {
    if (!this.session) {
      const { url, token } = await resolveCredentials();
      this.url = url;
      this.session = { url, client: createHiatusClient({ url, token }) };
    }
    return this.session;
  }
}
