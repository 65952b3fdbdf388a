import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// Two rules of the layout that an import rule per folder (biome.json) cannot see whole: imports
// run one way, domain → db → services → trpc/rest → http/server, and every SQL statement is in db/.
// (Services do choose where a transaction begins and ends: that is a rule, not a statement.)
const src = path.dirname(new URL(import.meta.url).pathname);
const queryBuilding = /\.(selectFrom|insertInto|updateTable|deleteFrom|with)\(|\bsql`/;

/**
 * Each module's layer, by the first prefix that matches its path under src/: a module may import
 * its own layer and those below it, never one above. Services share a layer and may use each
 * other, but no two folders may import each other (see `folderCycles`).
 */
const layers: Array<[layer: number, prefixes: string[]]> = [
  [0, ['domain/']],
  [1, ['defaults.ts', 'logger.ts', 'loops.ts', 'limits/', 'net/']],
  [2, ['agentapi/']],
  [3, ['db/']],
  [4, ['app.ts']],
  [5, ['lifecycle/', 'auth/', 'audit/', 'telemetry/', 'webhooks/', 'templates/', 'schedules/', 'inbox/']],
  [6, ['trpc/', 'rest/']],
  [7, ['config.ts', 'create-app.ts', 'console-files.ts', 'build-freshness.ts', 'http.ts']],
  [8, ['server.ts']],
  [9, ['main.ts', 'cli/']],
];

function layerOf(module: string): number {
  const found = layers.find(([, prefixes]) => prefixes.some((p) => module === p || module.startsWith(p)));
  if (!found) throw new Error(`${module} is in no layer: add it to architecture.test.ts`);
  return found[0];
}

type Import = { from: string; to: string };

/** Static, re-exported and dynamic imports of our own modules, as paths relative to src/. */
function importsOf(module: string, text: string): Import[] {
  const specifiers = text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^import\s+)'(\.{1,2}\/[^']+)'/gm);
  return [...specifiers].map(([, specifier]) => ({
    from: module,
    to: path.posix.normalize(path.posix.join(path.posix.dirname(module), specifier!)),
  }));
}

function upwardImports(imports: Import[]): string[] {
  return imports
    .filter(({ from, to }) => !to.startsWith('..') && layerOf(to) > layerOf(from))
    .map(({ from, to }) => `${from} (layer ${layerOf(from)}) imports ${to} (layer ${layerOf(to)})`);
}

/** Pairs of folders that import each other: the knot this layout exists to prevent. */
function folderCycles(imports: Import[]): string[] {
  const folderOf = (module: string) => (module.includes('/') ? module.split('/')[0]! : null);
  const edges = new Set(
    imports
      .map(({ from, to }) => [folderOf(from), folderOf(to)] as const)
      .filter(([a, b]) => a && b && a !== b)
      .map(([a, b]) => `${a}→${b}`),
  );
  return [...edges].filter((edge) => {
    const [a, b] = edge.split('→');
    return a! < b! && edges.has(`${b}→${a}`);
  });
}

async function sourceFiles(): Promise<Array<{ module: string; text: string }>> {
  const entries = await readdir(src, { withFileTypes: true, recursive: true });
  const files = entries.filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'));
  return Promise.all(
    files.map(async (e) => {
      const file = path.join(e.parentPath, e.name);
      return { module: path.relative(src, file).split(path.sep).join('/'), text: await readFile(file, 'utf8') };
    }),
  );
}

describe('the layers', () => {
  it('imports run one way, down the layers, and no two folders import each other', async () => {
    const imports = (await sourceFiles()).flatMap(({ module, text }) => importsOf(module, text));
    expect(imports.length).toBeGreaterThan(100);
    expect(upwardImports(imports)).toEqual([]);
    expect(folderCycles(imports)).toEqual([]);
  });

  it('finds an import that runs back up, and two folders importing each other (the check itself works)', () => {
    const imports = [
      ...importsOf('lifecycle/pause.ts', "import { appRouter } from '../trpc/router.ts';"),
      ...importsOf('db/tasks.ts', "import type { App } from '../app.ts';"),
      ...importsOf('http.ts', "const rest = import('./rest/handler.ts');"),
      ...importsOf('auth/accounts.ts', "import { getTask } from '../lifecycle/tasks.ts';"),
      ...importsOf('lifecycle/watch.ts', "import { authenticate } from '../auth/principals.ts';"),
    ];
    expect(upwardImports(imports)).toEqual([
      'lifecycle/pause.ts (layer 5) imports trpc/router.ts (layer 6)',
      'db/tasks.ts (layer 3) imports app.ts (layer 4)',
    ]);
    expect(folderCycles(imports)).toEqual(['auth→lifecycle']);
  });

  it('keeps every SQL statement in db/', async () => {
    const offenders: string[] = [];
    for (const { module, text } of await sourceFiles()) {
      if (module.startsWith('db/')) continue;
      text.split('\n').forEach((line, i) => {
        if (queryBuilding.test(line)) offenders.push(`${module}:${i + 1}: ${line.trim()}`);
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
