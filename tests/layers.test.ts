/**
 * The engine's folders are floors, each importing only from the floors below it
 * (README, "Layout"). This reads every source file of the engine, follows its
 * relative imports and fails on any that climbs up a floor, so that the rule holds
 * by test rather than by care.
 */
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The folders the rule covers; demos/, tests/ and bench/ may import anything. */
const SCANNED = ['runtime', 'actors', 'journal', 'snapshots'];

/**
 * Floors from the bottom up, by folder. A file may import its own floor and those
 * below. journal/ sits under snapshots/: the snapshot stores write the journal's
 * frames (journal/codec.ts) to disk the journal's way (journal/durable-fs.ts).
 */
const FLOORS: readonly (readonly [folder: string, name: string])[] = [
  ['runtime/base', 'base'],
  ['runtime/nats', 'nats'],
  ['runtime/graph', 'graph'],
  ['journal', 'journal'],
  ['snapshots', 'snapshots'],
  ['actors', 'actors'],
  ['runtime/ui', 'ui'],
  ['runtime/api', 'api'],
  ['runtime/cli', 'cli'],
];

/** The one file of the graph floor that the checkpoint stores may read. */
const WIRE = 'runtime/graph/wire.ts';

interface Import {
  /** Repo-relative path of the importing file. */
  readonly from: string;
  /** The specifier as written. */
  readonly specifier: string;
  /** Repo-relative path it resolves to. */
  readonly to: string;
}

function filesUnder(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return filesUnder(rel);
    return entry.name.endsWith('.ts') ? [rel] : [];
  });
}

/**
 * The specifiers of a source's static imports, re-exports and dynamic imports.
 * Comment lines are dropped first, so that an `@example` is not read as an import.
 */
function specifiersOf(source: string): string[] {
  const code = source
    .split('\n')
    .filter((line) => !/^\s*(\/\/|\/\*|\*)/.test(line))
    .join('\n');
  const patterns = [
    // import x from '…', import type { a, b } from '…', export { a } from '…', export * from '…'
    /^\s*(?:import|export)\s+(?:type\s+)?[\w$*\s{},]+?\s+from\s*['"]([^'"]+)['"]/gm,
    // import '…' (for its side effects)
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    // import('…')
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  return patterns.flatMap((pattern) => [...code.matchAll(pattern)].map((m) => m[1] as string));
}

function importsOf(file: string): Import[] {
  return specifiersOf(readFileSync(path.join(ROOT, file), 'utf8'))
    .filter((specifier) => specifier.startsWith('.'))
    .map((specifier) => ({ from: file, specifier, to: path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)) }));
}

/** The floor of a repo-relative path (its index in FLOORS), or undefined when it sits on none. */
function floorOf(file: string): number | undefined {
  const index = FLOORS.findIndex(([folder]) => file.startsWith(`${folder}/`));
  return index < 0 ? undefined : index;
}

function describe(imp: Import): string {
  return `${imp.from} imports '${imp.specifier}'`;
}

const files = SCANNED.flatMap(filesUnder).sort();
const imports = files.flatMap(importsOf);

test('layers - the import scan reads static imports, re-exports and dynamic imports, not comments', (t) => {
  const source = [
    "import { a, type B } from './a.ts';",
    "import type {\n  C,\n  D,\n} from '../c.ts';",
    "import * as e from './e.ts';",
    "import './side-effect.ts';",
    "export { f } from './f.ts';",
    "export type { G } from './g.ts';",
    "export * from './h.ts';",
    "const i = await import('./i.ts');",
    ' * @example',
    " * import { x } from './not-an-import.ts';",
    "// import { y } from './nor-this.ts';",
    "export function z(): void {}\nconst s = 'from';",
  ].join('\n');
  t.deepEqual(specifiersOf(source).sort(), ['../c.ts', './a.ts', './e.ts', './f.ts', './g.ts', './h.ts', './i.ts', './side-effect.ts']);
  // A scan that found nothing would pass every other test here.
  t.true(imports.length > 200, `only ${imports.length} imports found`);
});

test('layers - every engine file sits on a floor', (t) => {
  const lost = files.filter((file) => floorOf(file) === undefined);
  t.deepEqual(lost, [], `files outside ${FLOORS.map(([folder]) => `${folder}/`).join(', ')}`);
});

test('layers - no file imports from a higher floor', (t) => {
  const upward = imports
    .filter((imp) => {
      const from = floorOf(imp.from);
      const to = floorOf(imp.to);
      return from !== undefined && (to === undefined || to > from);
    })
    .map((imp) => {
      const from = FLOORS[floorOf(imp.from) as number]?.[1];
      const to = floorOf(imp.to);
      return `${describe(imp)}: ${from} may not import ${to === undefined ? 'outside the engine' : FLOORS[to]?.[1]}`;
    });
  t.deepEqual(upward, []);
});

test('layers - journal and snapshots take only wire.ts from the graph', (t) => {
  const graph = floorOf(WIRE);
  const wide = imports
    .filter((imp) => /^(journal|snapshots)\//.test(imp.from) && floorOf(imp.to) === graph && imp.to !== WIRE)
    .map((imp) => `${describe(imp)}: the checkpoint stores read only ${WIRE} from the graph`);
  t.deepEqual(wide, []);
});

test('layers - no two files import each other', (t) => {
  const edges = new Set(imports.map((imp) => `${imp.from} -> ${imp.to}`));
  const mutual = imports
    .filter((imp) => imp.from < imp.to && edges.has(`${imp.to} -> ${imp.from}`))
    .map((imp) => `${imp.from} and ${imp.to} import each other`);
  t.deepEqual([...new Set(mutual)], []);
});
