import { type RawBuilder, sql } from 'kysely';

/**
 * The next number of a per-key sequence kept in a table (`MAX + 1`): build numbers per workspace,
 * versions per template. Gap-free only under a lock the caller holds on the key.
 */
export function nextInSequence(table: string, column: string, keyColumn: string, key: string): RawBuilder<number> {
  return sql<number>`(SELECT COALESCE(MAX(${sql.ref(column)}), 0) + 1 FROM ${sql.table(table)} WHERE ${sql.ref(keyColumn)} = ${key})`;
}
