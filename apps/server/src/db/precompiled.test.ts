import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { useDatabase } from '../../test/harness.ts';
import { precompiled } from './precompiled.ts';

describe('a precompiled query', () => {
  const database = useDatabase('pglite');

  it('answers each call with its own values, in their places among the fixed ones', async () => {
    const pair = precompiled(2, (db, a: number, b: string) =>
      db.selectNoFrom([
        sql<number>`${a}::int`.as('a'),
        sql<string>`${'fixed'}::text`.as('f'),
        sql<string>`${b}::text`.as('b'),
      ]),
    );
    expect(await pair(database.db, 1, 'one')).toEqual([{ a: 1, f: 'fixed', b: 'one' }]);
    expect(await pair(database.db, 2, 'two')).toEqual([{ a: 2, f: 'fixed', b: 'two' }]);
  });

  it('compiles once per database handle', async () => {
    let builds = 0;
    const one = precompiled(1, (db, a: number) => {
      builds++;
      return db.selectNoFrom(sql<number>`${a}::int`.as('a'));
    });
    for (const a of [1, 2, 3]) expect(await one(database.db, a)).toEqual([{ a }]);
    expect(builds).toBe(1);
    await database.db.transaction().execute(async (trx) => expect(await one(trx, 4)).toEqual([{ a: 4 }]));
    expect(builds).toBe(2);
  });
});
