import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { FRAME_HEADER_BYTES, scanFrames } from '../../journal/codec.ts';
import { decodeValue, encodeValue } from '../../runtime/base/cbor.ts';
import type { SnapshotData } from '../../runtime/graph/wire.ts';
import { FileSnapshotStore } from '../../snapshots/file-snapshot-store.ts';
import { decodeSnapshot, encodeSnapshot, SNAPSHOT_CHUNK_ENTRIES, type SnapshotKey } from '../../snapshots/snapshot-codec.ts';
import { loopTurns } from '../helpers/loop-turns.ts';

interface Ctx {
  root: string;
}

const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.root = await fs.mkdtemp(path.join(os.tmpdir(), 'tributary-snapshots-'));
});

test.after.always(async (t) => {
  await fs.rm(t.context.root, { recursive: true, force: true });
});

let stores = 0;

/** A store in a fresh directory, and that directory. */
function freshStore(t: { context: Ctx }): { store: FileSnapshotStore; root: string } {
  const root = path.join(t.context.root, `store-${++stores}`);
  return { store: new FileSnapshotStore(root), root };
}

/** A structured key of several shapes, different for every `i`. */
function keyOf(i: number): unknown {
  switch (i % 5) {
    case 0:
      return `word-${i}-é`;
    case 1:
      return i;
    case 2:
      return ['user', i, { day: i % 7 }];
    case 3:
      return { user: `u${i}`, region: ['eu', i % 3] };
    default:
      return [i, [`nested-${i}`, [true, null]]];
  }
}

function entriesOf(n: number, offset = 0): [unknown, unknown][] {
  return Array.from({ length: n }, (_, k) => {
    const i = k + offset;
    return [keyOf(i), i % 2 === 0 ? i * 3 : { count: i, last: [i - 1, `v${i}`], big: 2 ** 40 + i }];
  });
}

/** The columns of `pairs` (what SnapshotData holds). */
function columnsOf(pairs: readonly (readonly [unknown, unknown])[]): { keys: unknown[]; values: unknown[] } {
  return { keys: pairs.map((p) => p[0]), values: pairs.map((p) => p[1]) };
}

function fullData(n: number): SnapshotData {
  return { kind: 'full', ...columnsOf(entriesOf(n)), removed: [], meta: { held: [[1000, [['a', 1]]]], seed: 42, note: 'ünïcode' } };
}

function deltaData(n: number, removed: number): SnapshotData {
  return {
    kind: 'delta',
    ...columnsOf(entriesOf(n, 1_000_000)),
    removed: Array.from({ length: removed }, (_, i) => keyOf(i)),
    meta: [],
  };
}

const KEY: SnapshotKey = { operator: 'reduceByKey-1a2b3c4d', partition: 3, time: 10_000 };

/**
 * Asserts two snapshots are equal. node's isDeepStrictEqual takes milliseconds where
 * ava's deepEqual takes seconds on 100k entries; on a mismatch, the first differing
 * entry is shown.
 */
function sameData(t: ExecutionContext<Ctx>, actual: SnapshotData, expected: SnapshotData): void {
  if (isDeepStrictEqual(actual, expected)) {
    t.pass();
    return;
  }
  t.deepEqual(
    { ...actual, keys: actual.keys.length, values: actual.values.length, removed: actual.removed.length },
    {
      ...expected,
      keys: expected.keys.length,
      values: expected.values.length,
      removed: expected.removed.length,
    },
  );
  const i = actual.keys.findIndex((k, j) => !isDeepStrictEqual([k, actual.values[j]], [expected.keys[j], expected.values[j]]));
  if (i >= 0) t.deepEqual([actual.keys[i], actual.values[i]], [expected.keys[i], expected.values[i]], `entry ${i}`);
  const r = actual.removed.findIndex((e, k) => !isDeepStrictEqual(e, expected.removed[k]));
  if (r >= 0) t.deepEqual(actual.removed[r], expected.removed[r], `removed key ${r}`);
  t.fail('snapshots differ');
}

async function corruptCode(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code;
  }
}

// ---- round trips ----------------------------------------------------------------

test('file snapshot store - a full snapshot of 100k structured entries round trips in several chunks', async (t) => {
  const { store } = freshStore(t);
  const data = fullData(100_000);
  const bytes = await store.write(KEY, data);
  const file = store.fileOf(KEY);
  t.is((await fs.stat(file)).size, bytes);
  const scan = scanFrames(await fs.readFile(file));
  t.is(scan.stop, undefined);
  const parts = scan.payloads.map((p) => (decodeValue(p) as { part: string }).part);
  t.is(parts.filter((p) => p === 'columns').length, Math.ceil(100_000 / SNAPSHOT_CHUNK_ENTRIES));
  t.deepEqual(parts.slice(0, 2), ['header', 'meta']);
  t.is(parts[parts.length - 1], 'end');
  sameData(t, await store.read(KEY), data);
});

test('file snapshot store - values kept in another form are written as `written` gives, with a times column', async (t) => {
  const { store } = freshStore(t);
  const n = SNAPSHOT_CHUNK_ENTRIES + 5;
  const kept = Array.from({ length: n }, (_, i) => ({ s: { count: i }, t: 1000 * i }));
  const keys = kept.map((_, i) => keyOf(i));
  const data: SnapshotData = {
    kind: 'full',
    keys,
    values: kept,
    written: (v) => (v as { s: unknown }).s,
    timeOf: (v) => (v as { t: number }).t,
    removed: [],
    meta: null,
  };
  await store.write(KEY, data);
  const back = await store.read(KEY);
  t.deepEqual(back.keys, keys);
  t.deepEqual(
    back.values,
    kept.map((v) => v.s),
  );
  t.deepEqual(
    back.times,
    kept.map((v) => v.t),
  );
  // A frame whose times do not match its keys is refused.
  const file = store.fileOf(KEY);
  const scan = scanFrames(await fs.readFile(file));
  const frames = scan.payloads.map((p) => decodeValue(p) as Record<string, unknown>);
  const columns = frames.findIndex((f) => f.part === 'columns');
  (frames[columns] as { times: number[] }).times.pop();
  await t.throwsAsync(
    decodeSnapshot(
      KEY,
      frames.map((f) => encodeValue(f)),
      'test',
    ),
    { message: /malformed times/ },
  );
});

test('file snapshot store - a delta snapshot with removed structured keys round trips', async (t) => {
  const { store } = freshStore(t);
  const data = deltaData(100_000, 45_000);
  await store.write(KEY, data);
  const back = await store.read(KEY);
  t.is(back.kind, 'delta');
  sameData(t, back, data);
  const parts = scanFrames(await fs.readFile(store.fileOf(KEY))).payloads.map((p) => (decodeValue(p) as { part: string }).part);
  t.is(parts.filter((p) => p === 'removed').length, Math.ceil(45_000 / SNAPSHOT_CHUNK_ENTRIES));
});

test('file snapshot store - an empty snapshot round trips', async (t) => {
  const { store } = freshStore(t);
  const data: SnapshotData = { kind: 'full', keys: [], values: [], removed: [], meta: undefined };
  await store.write(KEY, data);
  t.deepEqual(await store.read(KEY), data);
});

test('file snapshot store - writing a key again replaces the snapshot', async (t) => {
  const { store } = freshStore(t);
  await store.write(KEY, fullData(10));
  await store.write(KEY, fullData(3));
  t.deepEqual(await store.read(KEY), fullData(3));
});

test('file snapshot store - concurrent writes of one key leave one whole snapshot', async (t) => {
  const { store } = freshStore(t);
  const a = fullData(50_000);
  const b = deltaData(30_000, 10);
  await Promise.all([store.write(KEY, a), store.write(KEY, b)]);
  const back = await store.read(KEY);
  t.true(back.kind === 'full' ? back.keys.length === 50_000 : back.keys.length === 30_000);
  const names = await fs.readdir(path.dirname(store.fileOf(KEY)));
  t.deepEqual(names, [`${KEY.time}.cbor`]);
});

test('file snapshot store - operator names cannot leave the store directory', async (t) => {
  const { store, root } = freshStore(t);
  const keys: SnapshotKey[] = [
    { operator: 'a/b', partition: 0, time: 1000 },
    { operator: '..', partition: 0, time: 1000 },
    { operator: '../escape', partition: 1, time: 2000 },
    { operator: 'uid with spaces & ünïcode', partition: 0, time: 3000 },
  ];
  for (const key of keys) {
    const file = path.resolve(store.fileOf(key));
    t.true(file.startsWith(path.join(path.resolve(root), 'snapshots') + path.sep), file);
    await store.write(key, fullData(2));
    t.deepEqual(await store.read(key), fullData(2));
  }
  const seen: SnapshotKey[] = [];
  await store.retain((key) => {
    seen.push(key);
    return true;
  });
  const byName = (a: SnapshotKey, b: SnapshotKey) => a.operator.localeCompare(b.operator);
  t.deepEqual(seen.sort(byName), [...keys].sort(byName));
  await store.retain(() => false);
  t.is(await store.sizeBytes(), 0);
});

test('file snapshot store - malformed data is refused and leaves no file behind', async (t) => {
  const { store } = freshStore(t);
  const bad: unknown[] = [
    { kind: 'partial', keys: [], values: [], removed: [], meta: null },
    { kind: 'full', keys: ['a', 'b'], values: [1], removed: [], meta: null },
    { kind: 'full', entries: [['a', 1]], removed: [], meta: null },
    { kind: 'delta', keys: [], values: [], removed: 'a', meta: null },
  ];
  for (const data of bad) {
    await t.throwsAsync(store.write(KEY, data as SnapshotData), { message: /refusing to write snapshot/ }, JSON.stringify(data));
  }
  t.deepEqual(await fs.readdir(path.dirname(store.fileOf(KEY))), []);
  await t.throwsAsync(store.write({ ...KEY, time: 1.5 }, fullData(1)), { message: /refusing/ });
});

// ---- damage ---------------------------------------------------------------------

test('file snapshot store - a flipped byte is CORRUPT_CHECKPOINT', async (t) => {
  const { store } = freshStore(t);
  await store.write(KEY, fullData(50_000));
  const file = store.fileOf(KEY);
  const good = await fs.readFile(file);
  for (const at of [3, FRAME_HEADER_BYTES + 1, Math.floor(good.length / 2), good.length - 2]) {
    const bad = Buffer.from(good);
    bad[at] = (bad[at] as number) ^ 0x04;
    await fs.writeFile(file, bad);
    const error = await t.throwsAsync(store.read(KEY));
    t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT', `byte ${at}`);
    t.true(error?.message.includes(file), error?.message);
  }
});

test('file snapshot store - a truncated file is CORRUPT_CHECKPOINT', async (t) => {
  const { store } = freshStore(t);
  await store.write(KEY, fullData(50_000));
  const file = store.fileOf(KEY);
  const good = await fs.readFile(file);
  const scan = scanFrames(good);
  const lastFrame = scan.offsets[scan.offsets.length - 1] as number;
  // Mid-frame, at a frame boundary just before the end frame, after the header only, and empty.
  for (const size of [Math.floor(good.length / 2), lastFrame, scan.offsets[1] as number, 0]) {
    await fs.writeFile(file, good.subarray(0, size));
    t.is(await corruptCode(store.read(KEY)), 'CORRUPT_CHECKPOINT', `truncated to ${size} bytes`);
  }
});

test('file snapshot store - a missing file is CORRUPT_CHECKPOINT', async (t) => {
  const { store } = freshStore(t);
  const error = await t.throwsAsync(store.read(KEY));
  t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT');
  t.regex(error?.message ?? '', /missing/);
});

test('file snapshot store - a file copied to another key is CORRUPT_CHECKPOINT', async (t) => {
  const { store } = freshStore(t);
  await store.write(KEY, fullData(10));
  const others: SnapshotKey[] = [
    { ...KEY, time: KEY.time + 1000 },
    { ...KEY, partition: KEY.partition + 1 },
    { ...KEY, operator: 'reduceByKey-ffffffff' },
  ];
  for (const other of others) {
    await fs.mkdir(path.dirname(store.fileOf(other)), { recursive: true });
    await fs.copyFile(store.fileOf(KEY), store.fileOf(other));
    const error = await t.throwsAsync(store.read(other));
    t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT', JSON.stringify(other));
    t.regex(error?.message ?? '', /header names/);
  }
});

// ---- retention ------------------------------------------------------------------

test('file snapshot store - retain deletes exactly what keep rejects, and stale temp files', async (t) => {
  const { store } = freshStore(t);
  const keys: SnapshotKey[] = [];
  for (const operator of ['totals', 'window-00ab']) {
    for (const partition of [0, 1]) {
      for (const time of [1000, 2000, 3000]) keys.push({ operator, partition, time });
    }
  }
  for (const key of keys) await store.write(key, fullData(5));
  const stale = `${store.fileOf({ operator: 'totals', partition: 0, time: 4000 })}.tmp-99999`;
  const staleOfKept = `${store.fileOf({ operator: 'totals', partition: 1, time: 3000 })}.tmp-12345-7`;
  await fs.writeFile(stale, 'half a snapshot');
  await fs.writeFile(staleOfKept, 'half a snapshot');
  const keep = (k: SnapshotKey) => k.time === 3000 || (k.operator === 'totals' && k.partition === 1 && k.time === 2000);
  const asked: SnapshotKey[] = [];
  await store.retain((k) => {
    asked.push(k);
    return keep(k);
  });
  for (const key of keys) {
    const exists = await fs.stat(store.fileOf(key)).then(
      () => true,
      () => false,
    );
    t.is(exists, keep(key), JSON.stringify(key));
  }
  for (const temp of [stale, staleOfKept]) {
    await t.throwsAsync(fs.stat(temp), { code: 'ENOENT' } as never, temp);
  }
  t.is(asked.length, keys.length);
  for (const key of keys.filter(keep)) t.deepEqual(await store.read(key), fullData(5));
});

test('file snapshot store - retain leaves a snapshot being written alone', async (t) => {
  const { store } = freshStore(t);
  const dir = path.dirname(store.fileOf(KEY));
  let done = false;
  const writing = store.write(KEY, fullData(200_000)).finally(() => {
    done = true;
  });
  // Wait for the write's temp file, then retain (rejecting everything) while it runs.
  let temp: string | undefined;
  while (temp === undefined && !done) {
    temp = (await fs.readdir(dir).catch(() => [] as string[])).find((n) => n.includes('.tmp-'));
  }
  t.truthy(temp, 'the temp file was seen while the write ran');
  await store.retain(() => false);
  t.false(done);
  await writing;
  t.deepEqual((await store.read(KEY)).keys.length, 200_000);
});

test('file snapshot store - retain on an empty store does nothing', async (t) => {
  const { store } = freshStore(t);
  await store.retain(() => false);
  t.is(await store.sizeBytes(), 0);
});

test('file snapshot store - sizeBytes adds up the bytes written', async (t) => {
  const { store } = freshStore(t);
  let total = 0;
  for (const time of [1000, 2000]) total += await store.write({ ...KEY, time }, fullData(1000 * (time / 1000)));
  t.is(await store.sizeBytes(), total);
});

// ---- responsiveness -------------------------------------------------------------

const MILLION: SnapshotKey = { operator: 'countByValue-00000001', partition: 0, time: 60_000 };

test.serial('file snapshot store - a 1M-entry snapshot is encoded and decoded a chunk per event loop turn', async (t) => {
  const keys = Array.from({ length: 1_000_000 }, (_, i) => `key-${i}`);
  const values = Array.from({ length: 1_000_000 }, (_, i) => i);
  const data: SnapshotData = { kind: 'full', keys, values, removed: [], meta: null };
  // Encoding: the loop gets a turn between every two chunks of entries.
  const turns = loopTurns();
  const payloads: Buffer[] = [];
  const turnsAtChunk: number[] = [];
  for await (const frame of encodeSnapshot(MILLION, data)) {
    const scan = scanFrames(frame);
    const payload = scan.payloads[0] as Buffer;
    payloads.push(payload);
    if ((decodeValue(payload) as { part: string }).part === 'columns') turnsAtChunk.push(turns.count());
  }
  turns.stop();
  t.is(turnsAtChunk.length, 1_000_000 / SNAPSHOT_CHUNK_ENTRIES);
  const stalls = turnsAtChunk.filter((n, i) => i > 0 && n === turnsAtChunk[i - 1]).length;
  t.is(stalls, 0, 'chunks encoded back to back without a turn of the loop between them');

  // Decoding: one turn at least per chunk (decoding does no I/O, so every turn is a yield).
  const decoding = loopTurns();
  const back = await decodeSnapshot(MILLION, payloads, 'test');
  decoding.stop();
  t.true(decoding.count() >= turnsAtChunk.length, `decoding gave the loop ${decoding.count()} turns for ${turnsAtChunk.length} chunks`);
  t.is(back.keys.length, 1_000_000);

  // And through the store, written and read back whole.
  const { store } = freshStore(t);
  await store.write(MILLION, data);
  const read = await store.read(MILLION);
  t.is(read.keys.length, 1_000_000);
  t.deepEqual([read.keys[999_999], read.values[999_999]], ['key-999999', 999_999]);
});

test('file snapshot store - outline reads kind and entries from the frames alone, and refuses what read refuses', async (t) => {
  const { store } = freshStore(t);
  await store.write(KEY, fullData(50_000));
  t.deepEqual(await store.outline(KEY), { kind: 'full', entries: 50_000 });
  const file = store.fileOf(KEY);
  const good = await fs.readFile(file);
  const scan = scanFrames(good);
  const lastFrame = scan.offsets[scan.offsets.length - 1] as number;
  // A flipped byte anywhere (an entries frame in the middle included), a file cut before its end frame, none at all.
  const damaged: [string, Buffer][] = [
    ['header byte', Buffer.from(good).fill(good[3] === 0 ? 1 : 0, 3, 4)],
    ['middle byte', Buffer.from(good).fill((good[good.length >> 1] as number) ^ 0x10, good.length >> 1, (good.length >> 1) + 1)],
    ['cut before the end frame', good.subarray(0, lastFrame)],
    ['empty', Buffer.alloc(0)],
  ];
  for (const [what, bytes] of damaged) {
    await fs.writeFile(file, bytes);
    t.is(await corruptCode(store.outline(KEY)), 'CORRUPT_CHECKPOINT', what);
    t.is(await corruptCode(store.read(KEY)), 'CORRUPT_CHECKPOINT', what);
  }
  await fs.rm(file);
  t.is(await corruptCode(store.outline(KEY)), 'CORRUPT_CHECKPOINT', 'missing');
  // Another key's snapshot under this name: its header says so.
  await store.write({ ...KEY, time: KEY.time + 1 }, fullData(10));
  await fs.copyFile(store.fileOf({ ...KEY, time: KEY.time + 1 }), file);
  t.is(await corruptCode(store.outline(KEY)), 'CORRUPT_CHECKPOINT', 'another snapshot');
});
