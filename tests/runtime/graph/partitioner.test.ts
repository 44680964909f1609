import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { canonicalKey, KeyMap, partitionOf, stableHash } from '../../../runtime/graph/partitioner.ts';
import { KEYS, reordered } from '../../helpers/partitioner-keys.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const PARTITION_COUNTS = [1, 2, 3, 7, 16, 1024];

interface Placement {
  readonly canonical: string;
  readonly hash: number;
  readonly partitions: number[];
}

function placementOf(key: unknown): Placement {
  return { canonical: canonicalKey(key), hash: stableHash(key), partitions: PARTITION_COUNTS.map((n) => partitionOf(key, n)) };
}

test('partitioner - hashes and partitions are the same in a separate Node process', async (t) => {
  // The child builds its keys with object properties in reverse order, under another
  // string-hash seed, time zone and locale: none of these may change a placement.
  const script = `
    import { canonicalKey, partitionOf, stableHash } from './runtime/graph/partitioner.ts';
    import { KEYS, reordered } from './tests/helpers/partitioner-keys.ts';
    const counts = ${JSON.stringify(PARTITION_COUNTS)};
    const out = KEYS.map(reordered).map((k) => ({
      canonical: canonicalKey(k), hash: stableHash(k), partitions: counts.map((n) => partitionOf(k, n)),
    }));
    process.stdout.write(JSON.stringify(out));
  `;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--hash-seed=1234567', '--import', 'tsx', '--input-type=module', '-e', script],
    { cwd: ROOT, env: { ...process.env, TZ: 'Pacific/Kiritimati', LANG: 'tr_TR.UTF-8', LC_ALL: 'tr_TR.UTF-8' }, timeout: 60_000 },
  );
  const theirs = JSON.parse(stdout) as Placement[];
  const mine = KEYS.map(placementOf);
  t.is(theirs.length, KEYS.length);
  t.deepEqual(theirs, mine);
});

test('partitioner - structurally equal keys built differently hash the same in-process', (t) => {
  for (const key of KEYS) t.deepEqual(placementOf(reordered(key)), placementOf(key), String(canonicalKey(key)));
});

test('partitioner - golden hashes do not change across releases', (t) => {
  // Computed once and pinned: snapshots and multi-node ownership place keys by these
  // values, so a change here breaks every existing checkpoint.
  const golden: [unknown, string, number][] = [
    ['', 's', 550558746],
    ['a', 'sa', 1895548240],
    ['word', 'sword', 95124449],
    ['日本語', 's日本語', 4162027698],
    ['🙂 emoji', 's🙂 emoji', 2135360188],
    [0, 'n0', 793400324],
    [-0, 'n0', 793400324],
    [1, 'n1', 2855225089],
    [1.5, 'n1.5', 9528245],
    [1n, 'b1', 1096793167],
    [true, 'T', 3347516322],
    [null, 'z', 228143771],
    [undefined, 'u', 910896560],
    [['a', 1], '[s"a",n1]', 3254178259],
    [['a', 'b'], '[s"a",s"b"]', 4214188073],
    [{ b: 'two', a: 1 }, '{"a":n1,"b":s"two"}', 817953948],
  ];
  for (const [key, canonical, hash] of golden) {
    t.is(canonicalKey(key), canonical);
    t.is(stableHash(key), hash, canonical);
  }
  t.deepEqual(
    ['a', 'word', 0, ['a', 1]].map((k) => partitionOf(k, 7)),
    [5, 0, 3, 3],
  );
});

test('partitioner - values of distinct types never collide', (t) => {
  const distinct: unknown[] = [
    1,
    '1',
    1n,
    true,
    'true',
    'T',
    null,
    'null',
    'z',
    undefined,
    'u',
    [1],
    ['1'],
    [[1]],
    { 0: 1 },
    new Date(1),
    'd1',
    'n1',
  ];
  const texts = distinct.map(canonicalKey);
  t.is(new Set(texts).size, distinct.length, texts.join(' | '));
  const map = new KeyMap<unknown, number>();
  for (const [i, k] of distinct.entries()) map.set(k, i);
  t.is(map.size, distinct.length);
  for (const [i, k] of distinct.entries()) t.is(map.get(k), i, String(texts[i]));
});

test('partitioner - strings inside structured keys cannot imitate separators', (t) => {
  const pairs: [unknown, unknown][] = [
    [['a,sb'], ['a', 'b']],
    [
      ['a', 'b,sc'],
      ['a', 'b', 'c'],
    ],
    [{ a: 'x","b":sy' }, { a: 'x', b: 'y' }],
    [['[sa]'], [['a']]],
    [{ 'a":n1,"b': 2 }, { a: 1, b: 2 }],
  ];
  for (const [x, y] of pairs) {
    t.not(canonicalKey(x), canonicalKey(y), JSON.stringify([x, y]));
    const map = new KeyMap<unknown, string>();
    map.set(x, 'x');
    map.set(y, 'y');
    t.is(map.size, 2);
    t.is(map.get(x), 'x');
    t.is(map.get(y), 'y');
  }
});

test('partitioner - KeyMap compares arrays and objects structurally', (t) => {
  const map = new KeyMap<unknown, number>();
  map.set(['a', 1], 1);
  map.set({ x: 1, y: [2, 3] }, 2);
  map.set('a', 3);
  t.is(map.get(['a', 1]), 1);
  t.true(map.has(['a', 1]));
  t.false(map.has(['a', 2]));
  t.is(map.get({ y: [2, 3], x: 1 }), 2);
  map.set(['a', 1], 10);
  t.is(map.size, 3);
  t.is(map.get(['a', 1]), 10);
  t.deepEqual(
    map.toArray().map(([, v]) => v),
    [3, 10, 2],
  );
  t.true(map.delete({ y: [2, 3], x: 1 }));
  t.false(map.has({ x: 1, y: [2, 3] }));
  t.is(map.size, 2);
});

test('partitioner - KeyMap treats -0 as 0 and NaN as NaN, like partitionOf', (t) => {
  const map = new KeyMap<unknown, string>();
  map.set(-0, 'zero');
  map.set(Number.NaN, 'nan');
  t.is(map.get(0), 'zero');
  t.is(map.get(Number.NaN), 'nan');
  map.set([-0], 'array');
  t.is(map.get([0]), 'array');
  t.is(partitionOf(-0, 16), partitionOf(0, 16));
});

test('partitioner - partitionOf stays in range and spreads keys', (t) => {
  const counts = new Array<number>(8).fill(0);
  for (let i = 0; i < 8000; i++) {
    const p = partitionOf(`key-${i}`, 8);
    t.true(p >= 0 && p < 8);
    counts[p] = (counts[p] ?? 0) + 1;
  }
  for (const c of counts) t.true(c > 800 && c < 1200, `uneven spread: ${counts.join(',')}`);
  for (const k of KEYS) t.is(partitionOf(k, 1), 0);
});

test('partitioner - keys that have no structural encoding are refused', (t) => {
  for (const bad of [new Map([[1, 2]]), new Set([1]), new (class Point {})(), () => 1, Symbol('s')]) {
    t.throws(() => canonicalKey(bad), { instanceOf: TypeError });
    t.throws(() => stableHash(bad), { instanceOf: TypeError });
    t.throws(() => new KeyMap<unknown, number>().set(bad, 1), { instanceOf: TypeError });
  }
  t.throws(() => canonicalKey([new Map()]), { instanceOf: TypeError, message: /Map/ });
});

test('partitioner - a KeyMap past 65,536 primitive keys spreads them and still behaves as one map', (t) => {
  const m = new KeyMap<unknown, number>();
  const n = 70_000;
  for (let i = 0; i < n; i++) m.set(i % 2 === 0 ? `k${i}` : i, i);
  m.set(['structured', 1], -1);
  m.set(-0, 0);
  m.set(0, 7);
  t.is(m.size, n + 2, '-0 and 0 are one key');
  t.is(m.get(-0), 7);
  t.is(m.get('k68000'), 68_000);
  t.is(m.get(69_999), 69_999);
  t.is(m.get(Number.NaN), undefined);
  m.set(Number.NaN, 5);
  t.is(m.get(Number.NaN), 5);
  t.true(m.has(['structured', 1]));
  m.set('k2', 200);
  t.is(m.size, n + 3);
  t.true(m.delete('k4'));
  t.false(m.delete('k4'));
  t.is(m.size, n + 2);
  const { keys, values } = m.columns();
  t.is(keys.length, m.size);
  t.is(new Set(keys.map(String)).size, m.size);
  keys.forEach((k, i) => {
    t.is(values[i], m.get(k), `columns agree at ${String(k)}`);
  });
  t.deepEqual(
    m.toArray().map(([k]) => String(k)),
    [...m.keys()].map(String),
  );
  // Each part keeps its insertion order: expired entries come off the front of each.
  const timed = new KeyMap<string, number>();
  for (let i = 0; i < n; i++) timed.set(`t${i}`, i);
  for (let i = 0; i < 100; i++) {
    timed.delete(`t${i}`);
    timed.set(`t${i}`, n + i);
  }
  const expired = timed.takeExpired((v) => v < 1000);
  t.deepEqual(
    expired.map(([, v]) => v).sort((a, b) => a - b),
    Array.from({ length: 900 }, (_, i) => i + 100),
  );
  t.is(timed.size, n - 900);
  timed.clear();
  t.is(timed.size, 0);
  timed.set('again', 1);
  t.deepEqual(timed.toArray(), [['again', 1]]);
});
