import { initTRPC } from '@trpc/server';
import type { Db } from '../db/connection.ts';
import type { Lifecycle } from '../lifecycle/context.ts';
import type { Logger } from '../logger.ts';

/** What every procedure can reach: the database and a logger bound to the request. */
export type Context = {
  db: Db;
  lifecycle: Lifecycle;
  log: Logger;
};

const t = initTRPC.context<Context>().create();

export const router = t.router;
export const publicProcedure = t.procedure;
export const createCallerFactory = t.createCallerFactory;
