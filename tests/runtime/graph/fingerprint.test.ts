import test from 'ava';
import { pino } from 'pino';
import { StreamingContext } from '../../../runtime/api/index.ts';
import { ManualClock } from '../../../runtime/api/testing.ts';
import { compareFingerprints, fingerprintOf, stableKeys } from '../../../runtime/graph/fingerprint.ts';
import type { FingerprintEntry } from '../../../runtime/graph/wire.ts';

interface AppShape {
  /** Window length of the windowed counts. */
  readonly windowMs?: number;
  /** Partitions of the reduceByKey. */
  readonly partitions?: number;
  /** A filter (no uid) between the words and the pairs. */
  readonly filter?: boolean;
  /** An operator with a uid, built early so that every later id shifts. */
  readonly extra?: 'none' | 'operator' | 'with-output';
  /** A uid on the reduceByKey. */
  readonly uidOnCounts?: boolean;
}

interface Built {
  readonly ssc: StreamingContext;
  readonly keys: Map<number, string>;
  readonly fingerprint: FingerprintEntry[];
}

/** The same word-count app, varied by `shape`; the graph is inspected without starting. */
function build(shape: AppShape = {}): Built {
  const ssc = new StreamingContext({
    appName: 'fingerprint',
    batchDuration: 1000,
    partitions: 2,
    clock: new ManualClock(),
    logger: pino({ level: 'silent' }),
  });
  const lines = ssc.queueStream<string>([]);
  let words = lines.flatMap((l) => l.split(' '));
  if (shape.extra === 'operator') words.map((w) => w.length).uid('lengths');
  if (shape.extra === 'with-output') {
    words
      .map((w) => w.length)
      .uid('lengths')
      .foreachBatch(() => {});
  }
  if (shape.filter) words = words.filter((w) => w.length > 0);
  const counts = words.map((w): [string, number] => [w, 1]).reduceByKey((a, b) => a + b, { partitions: shape.partitions ?? 2 });
  if (shape.uidOnCounts) counts.uid('counts');
  counts.window(shape.windowMs ?? 3000, 1000).foreachBatch(() => {});
  counts.print();
  const { nodes, outputs } = ssc.graph;
  const keys = stableKeys(nodes, outputs);
  return { ssc, keys, fingerprint: fingerprintOf(nodes, outputs, keys) };
}

/** Keys of the entries without a uid, in graph order. */
function keysWithoutUid(b: Built): string[] {
  return b.fingerprint.filter((e) => e.uid === null).map((e) => e.key);
}

test('fingerprint - the same app twice has identical keys and no differences', (t) => {
  const a = build();
  const b = build();
  t.deepEqual([...b.keys], [...a.keys]);
  t.deepEqual(b.fingerprint, a.fingerprint);
  t.deepEqual(compareFingerprints(a.fingerprint, b.fingerprint), []);
  // Every node and output has a key, and no two share one.
  t.is(a.keys.size, a.ssc.graph.nodes.length + a.ssc.graph.outputs.length);
  t.is(new Set(a.keys.values()).size, a.keys.size);
});

test('fingerprint - keys survive a round trip through the journal encoding', async (t) => {
  const { decodeValue, encodeValue } = await import('../../../runtime/base/cbor.ts');
  const a = build({ uidOnCounts: true });
  const back = decodeValue(encodeValue(a.fingerprint)) as FingerprintEntry[];
  t.deepEqual(compareFingerprints(back, build({ uidOnCounts: true }).fingerprint), []);
});

test('fingerprint - keys name the operator and do not depend on creation order', (t) => {
  const a = build();
  const operators = a.fingerprint.map((e) => e.operator);
  for (const [i, e] of a.fingerprint.entries()) t.true(e.key.startsWith(`${operators[i]}-`), e.key);
  // The extra operator is created before the pairs and the counts: their ids shift, their keys must not.
  const b = build({ extra: 'operator' });
  const idOf = (built: Built, operator: string) => built.ssc.graph.nodes.find((n) => n.operator === operator)?.id;
  t.not(idOf(b, 'reduceByKey'), idOf(a, 'reduceByKey'));
  t.deepEqual(keysWithoutUid(b), keysWithoutUid(a));
});

test('fingerprint - adding an operator with a uid makes no difference', (t) => {
  const a = build();
  const b = build({ extra: 'operator' });
  t.deepEqual(compareFingerprints(a.fingerprint, b.fingerprint), []);
  t.deepEqual(compareFingerprints(b.fingerprint, a.fingerprint), [], 'and removing it again neither');
  const added = b.fingerprint.filter((e) => !a.fingerprint.some((x) => x.key === e.key));
  t.deepEqual(
    added.map((e) => [e.key, e.uid]),
    [['lengths', 'lengths']],
  );
});

test('fingerprint - adding an operator with a uid and an output on it makes no difference', (t) => {
  const a = build();
  const b = build({ extra: 'with-output' });
  t.deepEqual(compareFingerprints(a.fingerprint, b.fingerprint), []);
  t.deepEqual(compareFingerprints(b.fingerprint, a.fingerprint), []);
  t.deepEqual(keysWithoutUid(b), keysWithoutUid(a));
});

test('fingerprint - changing a window length is a change naming the window', (t) => {
  const a = build();
  const b = build({ windowMs: 5000 });
  const differences = compareFingerprints(a.fingerprint, b.fingerprint);
  t.is(differences.length, 1, differences.join('\n'));
  t.regex(differences[0] ?? '', /^changed: /);
  t.regex(differences[0] ?? '', /window/);
  t.regex(differences[0] ?? '', /windowMs=3000.*->.*windowMs=5000/);
});

test('fingerprint - changing a partition count is a change naming the operator', (t) => {
  const a = build();
  const b = build({ partitions: 4 });
  const differences = compareFingerprints(a.fingerprint, b.fingerprint);
  t.true(differences.length > 0);
  for (const d of differences) t.regex(d, /^changed: /);
  t.true(
    differences.some((d) => /reduceByKey .*2 partitions.*-> .*reduceByKey .*4 partitions/.test(d)),
    differences.join('\n'),
  );
});

test('fingerprint - an operator with a uid must still match when present', (t) => {
  const a = build({ uidOnCounts: true });
  const b = build({ uidOnCounts: true, partitions: 3 });
  const differences = compareFingerprints(a.fingerprint, b.fingerprint);
  t.true(
    differences.some((d) => d.startsWith('changed: uid "counts" reduceByKey')),
    differences.join('\n'),
  );
});

test('fingerprint - removing an operator without a uid is a removal', (t) => {
  const a = build({ filter: true });
  const b = build();
  const differences = compareFingerprints(a.fingerprint, b.fingerprint);
  t.true(
    differences.some((d) => d.startsWith('removed: filter')),
    differences.join('\n'),
  );
  // And the other way round, adding it is refused too.
  t.true(compareFingerprints(b.fingerprint, a.fingerprint).some((d) => d.startsWith('added: filter')));
});

test('fingerprint - parameters are compared whatever their order', (t) => {
  const entry: FingerprintEntry = {
    key: 'window-1',
    operator: 'window',
    uid: null,
    slideMs: 1000,
    partitions: 2,
    params: { windowMs: 3000, slideMs: 1000 },
  };
  const reordered: FingerprintEntry = { ...entry, params: { slideMs: 1000, windowMs: 3000 } };
  t.deepEqual(compareFingerprints([entry], [reordered]), []);
});

test('fingerprint - a socket source that moved to another host or port is the same graph, also against an older journal', (t) => {
  const socketApp = (host: string, port: number): FingerprintEntry[] => {
    const ssc = new StreamingContext({
      appName: 'moved',
      batchDuration: 1000,
      clock: new ManualClock(),
      logger: pino({ level: 'silent' }),
    });
    ssc
      .socketTextStream(host, port)
      .map((l): [string, number] => [l, 1])
      .reduceByKey((a, b) => a + b)
      .print();
    const { nodes, outputs } = ssc.graph;
    return fingerprintOf(nodes, outputs, stableKeys(nodes, outputs));
  };
  const before = socketApp('127.0.0.1', 9999);
  const after = socketApp('lines.internal', 7000);
  t.true(
    before.some((e) => e.operator === 'socketTextStream'),
    'the source is in the fingerprint',
  );
  t.deepEqual(compareFingerprints(before, after), []);
  // Journals written before host and port left the fingerprint recorded them.
  const older = before.map((e) => (e.operator === 'socketTextStream' ? { ...e, params: { host: '127.0.0.1', port: 9999 } } : e));
  t.deepEqual(compareFingerprints(older, after), []);
  // What the graph computes still counts.
  const changed = after.map((e) => (e.operator === 'socketTextStream' ? { ...e, partitions: e.partitions + 1 } : e));
  t.notDeepEqual(compareFingerprints(before, changed), []);
});
