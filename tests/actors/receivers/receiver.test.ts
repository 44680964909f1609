import anyTest, { type TestFn } from 'ava';
import { pino } from 'pino';
import { InvalidConfigError, Receiver, SourceFailedError, StreamingContext } from '../../../runtime/api/index.ts';
import { collectBatches, ManualClock } from '../../../runtime/api/testing.ts';

const test = anyTest as TestFn<unknown>;

/** Counts what receivers accepted, and resolves waits when a total is reached (no sleeping). */
class Received {
  records = 0;
  events = 0;
  streams = new Set<string>();
  #waiters: { check: () => boolean; resolve: () => void }[] = [];

  constructor(ssc: StreamingContext) {
    ssc.addStreamingListener({
      onRecordsReceived: ({ stream, records }) => {
        this.records += records;
        this.events += 1;
        this.streams.add(stream);
        this.#waiters = this.#waiters.filter((w) => {
          if (!w.check()) return true;
          w.resolve();
          return false;
        });
      },
    });
  }

  #until(check: () => boolean): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ check, resolve }));
  }

  /** Resolves once `n` records in total were accepted. */
  untilRecords(n: number): Promise<void> {
    return this.#until(() => this.records >= n);
  }

  /** Resolves once `n` store messages in total were accepted. */
  untilEvents(n: number): Promise<void> {
    return this.#until(() => this.events >= n);
  }
}

function context(appName: string): StreamingContext {
  // Silent: some tests fail the context on purpose, and their error logs are expected.
  return new StreamingContext({ appName, batchDuration: 1000, partitions: 2, clock: new ManualClock(), logger: pino({ level: 'silent' }) });
}

/** A receiver that stores some records on start and records its lifecycle calls. */
class ListReceiver<T> extends Receiver<T> {
  readonly calls: string[] = [];
  readonly initial: readonly T[];

  constructor(initial: readonly T[]) {
    super();
    this.initial = initial;
  }

  onStart(): void {
    this.calls.push('start');
    for (const r of this.initial) this.store(r);
  }

  onStop(): void {
    this.calls.push('stop');
  }

  /** Lets the test store records later, as a source's callback would. */
  push(record: T): void {
    this.store(record);
  }

  pushAll(records: Iterable<T>): void {
    this.storeAll(records);
  }

  get drainedCalls(): number {
    return this.#drained;
  }

  #drained = 0;

  protected override onDrained(): void {
    this.#drained += 1;
  }
}

test('receiverStream - records stored in onStart reach the first batch', async (t) => {
  const ssc = context('recv-start');
  const received = new Received(ssc);
  const receiver = new ListReceiver(['a', 'b', 'c']);
  const out = collectBatches(ssc.receiverStream(receiver));
  await ssc.start();
  await received.untilRecords(3);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => [b.time, b.records]),
    [[1000, ['a', 'b', 'c']]],
  );
  t.is(received.events, 3);
  t.deepEqual([...received.streams], ['receiverStream#1']);
});

test('receiverStream - onStop is called exactly once, on ssc.stop() and not before', async (t) => {
  const ssc = context('recv-stop');
  const receiver = new ListReceiver<string>([]);
  ssc.receiverStream(receiver).foreachBatch(() => {});
  t.deepEqual(receiver.calls, []);
  t.true(receiver.isStopped());
  await ssc.start();
  t.deepEqual(receiver.calls, ['start']);
  t.false(receiver.isStopped());
  await ssc.runBatches(2);
  t.deepEqual(receiver.calls, ['start']);
  await ssc.stop();
  t.deepEqual(receiver.calls, ['start', 'stop']);
  t.true(receiver.isStopped());
  await ssc.stop();
  t.deepEqual(receiver.calls, ['start', 'stop']);
});

test('receiverStream - records stored between batches go to the next batch, each exactly once', async (t) => {
  const ssc = context('recv-between');
  const received = new Received(ssc);
  const receiver = new ListReceiver<number>([1]);
  const out = collectBatches(ssc.receiverStream(receiver));
  await ssc.start();
  await received.untilRecords(1);
  await ssc.runBatches(1);
  receiver.push(2);
  receiver.push(3);
  await received.untilRecords(3);
  await ssc.runBatches(2);
  receiver.push(4);
  await received.untilRecords(4);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [[1], [2, 3], [], [4]],
  );
});

test('receiverStream - store() of a record that is itself an array (a pair) stores one record', async (t) => {
  const ssc = context('recv-pairs');
  const received = new Received(ssc);
  const receiver = new ListReceiver<[string, number]>([
    ['a', 1],
    ['b', 2],
  ]);
  const out = collectBatches(ssc.receiverStream(receiver).reduceByKey((x, y) => x + y));
  await ssc.start();
  await received.untilEvents(2);
  await ssc.runBatches(1);
  await ssc.stop();
  t.is(received.records, 2);
  t.deepEqual(out[0]?.records.sort(), [
    ['a', 1],
    ['b', 2],
  ]);
});

test('receiverStream - storeAll() stores every record of an array or iterator, in order', async (t) => {
  const ssc = context('recv-store-all');
  const received = new Received(ssc);
  const receiver = new ListReceiver<string>([]);
  const out = collectBatches(ssc.receiverStream(receiver));
  await ssc.start();
  receiver.pushAll(['a', 'b']);
  receiver.pushAll(new Set(['c', 'd']).values());
  receiver.pushAll([]);
  await received.untilRecords(4);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['a', 'b', 'c', 'd']);
});

test('receiverStream - storeAll() copies the array, so a receiver may reuse its buffer at once', async (t) => {
  const ssc = context('recv-reuse');
  const received = new Received(ssc);
  const receiver = new ListReceiver<string>([]);
  const out = collectBatches(ssc.receiverStream(receiver));
  await ssc.start();
  const buffer = ['a', 'b'];
  receiver.pushAll(buffer);
  buffer.length = 0;
  buffer.push('c');
  receiver.pushAll(buffer);
  buffer.length = 0;
  await received.untilEvents(2);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['a', 'b', 'c']);
});

test('receiverStream - buffered counts stored records until a batch takes them, then onDrained runs', async (t) => {
  const ssc = context('recv-buffered');
  const received = new Received(ssc);
  const receiver = new ListReceiver<string>(['a', 'b']);
  ssc.receiverStream(receiver).foreachBatch(() => {});
  await ssc.start();
  await received.untilRecords(2);
  t.is(receiver.buffered, 2);
  t.is(receiver.drainedCalls, 0);
  await ssc.runBatches(1);
  t.is(receiver.buffered, 0);
  t.true(receiver.drainedCalls >= 1);
  await ssc.stop();
});

test('receiverStream - store() after stop is ignored', async (t) => {
  const ssc = context('recv-after-stop');
  const received = new Received(ssc);
  const receiver = new ListReceiver<string>(['a']);
  ssc.receiverStream(receiver).foreachBatch(() => {});
  await ssc.start();
  await received.untilRecords(1);
  await ssc.stop();
  // stop() hands what was still buffered to the write-ahead log; what comes later is not counted.
  const buffered = receiver.buffered;
  t.notThrows(() => receiver.push('late'));
  t.is(receiver.buffered, buffered);
});

test('receiverStream - an async onStart is awaited before start() resolves', async (t) => {
  class SlowStart extends Receiver<string> {
    started = false;
    async onStart(): Promise<void> {
      await Promise.resolve();
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.started = true;
      this.store('ready');
    }
    onStop(): void {}
  }
  const ssc = context('recv-async-start');
  const received = new Received(ssc);
  const receiver = new SlowStart();
  const out = collectBatches(ssc.receiverStream(receiver));
  await ssc.start();
  t.true(receiver.started);
  await received.untilRecords(1);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['ready']);
});

test('receiverStream - fail() stops the context with SOURCE_FAILED', async (t) => {
  class Failing extends Receiver<string> {
    onStart(): void {}
    onStop(): void {}
    boom(): void {
      this.fail('upstream is gone', new Error('ECONNRESET'));
    }
  }
  const ssc = context('recv-fail');
  const receiver = new Failing();
  ssc.receiverStream(receiver).foreachBatch(() => {});
  await ssc.start();
  receiver.boom();
  const error = await t.throwsAsync(ssc.awaitTermination(), { instanceOf: SourceFailedError });
  t.is(error?.code, 'SOURCE_FAILED');
  t.regex(error?.message ?? '', /upstream is gone/);
  t.is(ssc.lifecycle, 'stopped');
  t.true(receiver.isStopped());
});

test('receiverStream - one receiver instance cannot feed two streams', async (t) => {
  const ssc = context('recv-twice');
  const receiver = new ListReceiver<string>([]);
  ssc.receiverStream(receiver).foreachBatch(() => {});
  ssc.receiverStream(receiver).foreachBatch(() => {});
  await t.throwsAsync(ssc.start(), { instanceOf: InvalidConfigError });
});

test('receiverStream - something that is not a Receiver is refused', (t) => {
  const ssc = context('recv-not-receiver');
  t.throws(() => ssc.receiverStream({ onStart() {}, onStop() {} } as unknown as Receiver<string>), { instanceOf: InvalidConfigError });
});

test('receiverStream - a stream named with any uid (spaces, #, $, /) still starts its receiver', async (t) => {
  const ssc = context('recv-uid');
  const received = new Received(ssc);
  const a = new ListReceiver<string>(['a']);
  const b = new ListReceiver<string>(['b']);
  const out = collectBatches(ssc.union([ssc.receiverStream(a).uid('clicks $0023 #1'), ssc.receiverStream(b).uid('clicks ##1/é')]));
  await ssc.start();
  await received.untilRecords(2);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records.sort(), ['a', 'b']);
  t.deepEqual([...received.streams].sort(), ['clicks $0023 #1', 'clicks ##1/é'].sort());
});
