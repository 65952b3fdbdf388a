import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// The import direction (routers → services → db → domain) and the absence of cycles are Biome
// rules (biome.json: noRestrictedImports per folder, noImportCycles). What an import rule cannot
// see is a query built on a database handle passed in: this test keeps every statement in db/.
// (Services do choose where a transaction begins and ends: that is a rule, not a statement.)
const src = path.dirname(new URL(import.meta.url).pathname);
const queryBuilding = /\.(selectFrom|insertInto|updateTable|deleteFrom|with)\(|\bsql`/;

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

describe('the layers', () => {
  it('keeps every SQL statement in db/', async () => {
    const offenders: string[] = [];
    for (const file of await sourceFiles(src)) {
      const relative = path.relative(src, file);
      if (relative.startsWith(`db${path.sep}`)) continue;
      const lines = (await readFile(file, 'utf8')).split('\n');
      lines.forEach((line, i) => {
        if (queryBuilding.test(line)) offenders.push(`${relative}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(offenders).toEqual([]);
  });

  it('finds a query outside db/ when there is one (the check itself works)', () => {
    expect(queryBuilding.test('await app.db.selectFrom("tasks")')).toBe(true);
    expect(queryBuilding.test('const rows = sql`SELECT 1`')).toBe(true);
    expect(queryBuilding.test('await findTask(app.db, id)')).toBe(false);
  });
});
