/**
 * Every error code has an exported class that carries it, and the README's "Errors"
 * table names each code with that class: a code added without an exported class,
 * or without a row in the README, fails here.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { ErrorCode } from '../../../runtime/api/index.ts';
import * as api from '../../../runtime/api/index.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

// Keyed by ErrorCode: a new code fails to compile until it is listed here, and then
// fails below until the README documents it.
const CODES: Record<ErrorCode, true> = {
  INVALID_DURATION: true,
  INVALID_GRAPH: true,
  INVALID_CONFIG: true,
  INVALID_STATE: true,
  INVALID_TRANSFORM_RESULT: true,
  INCOMPATIBLE_CHECKPOINT: true,
  CORRUPT_CHECKPOINT: true,
  FENCED: true,
  BATCH_FAILED: true,
  SOURCE_FAILED: true,
};

/** Every error class the public entry exports but the base class, with an instance of it. */
function exportedErrorClasses(): { readonly name: string; readonly error: api.TributaryError }[] {
  const classes: { name: string; error: api.TributaryError }[] = [];
  for (const [name, value] of Object.entries(api)) {
    if (typeof value !== 'function' || value === api.TributaryError || !(value.prototype instanceof api.TributaryError)) continue;
    // Arguments every constructor accepts: a message (or the list of differences), a time, a cause.
    classes.push({ name, error: Reflect.construct(value, [['a difference'], 1000, new Error('cause')]) as api.TributaryError });
  }
  return classes;
}

/** A section of the README, from its `## title` to the next `## `. */
async function readmeSection(title: string): Promise<string> {
  const readme = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n## ${title}\n`);
  if (start < 0) return '';
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

test('exports - every error code has an exported class that carries it', (t) => {
  const classes = exportedErrorClasses();
  t.deepEqual(classes.map((c) => c.error.code).sort(), Object.keys(CODES).sort(), 'one class per code');
  for (const { name, error } of classes) {
    t.is(error.name, name, 'each class sets name to itself');
    t.true(error instanceof Error);
  }
});

test('exports - the README names every error code with its exported class', async (t) => {
  const section = await readmeSection('Errors');
  t.true(section.length > 0, 'README.md has an "## Errors" section');
  const classes = exportedErrorClasses();
  for (const code of Object.keys(CODES)) {
    // One table row per code (the code in its first cell), naming the class that carries it.
    const row = section.split('\n').find((line) => line.startsWith(`| \`${code}\` |`));
    const name = classes.find((c) => c.error.code === code)?.name;
    t.truthy(row, `no row for ${code}`);
    t.truthy(name, `no exported class for ${code}`);
    t.true(row?.includes(`\`${name}\``), `the row of ${code} names ${name}`);
  }
});
