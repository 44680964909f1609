/**
 * Backpressure on the wall clock: a JetStream stream holding far more than the app
 * can process, read through an operator that takes 2 ms per record (a real blocking
 * wait, so the cost does not depend on how busy the CPU is). Without backpressure the
 * first batch takes everything and the scheduling delay grows to seconds; with it,
 * Spark's PID estimator sizes each batch to what is processed in time and the delay
 * stays under two batch durations. maxRatePerPartition caps every batch.
 */
import * as net from 'node:net';
import { type DStream, StreamingContext, type StreamingContextConfig } from '../../runtime/api/index.ts';
import { quiet } from '../helpers/checkpoint-kit.ts';
import { addStream, type NatsSuite, natsSuite, publishAll, Tally, uniq } from '../helpers/nats-kit.ts';

const test = natsSuite();

const BATCH_MS = 500;
const RECORD_MS = 2;
const MESSAGES = 2500;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Blocks the thread for `ms` (the deliberately slow operator). */
function blockFor(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

interface Run {
  readonly delays: number[];
  readonly sizes: number[];
}

const lines = Array.from({ length: MESSAGES }, (_, i) => `m${i}`);

/** The input: a JetStream stream holding every message, or a line server that sends them all at once. */
async function input(t: { context: NatsSuite }, kind: 'jetstream' | 'socket', ssc: StreamingContext): Promise<DStream<string>> {
  if (kind === 'jetstream') {
    const stream = uniq('BP');
    await addStream(t.context.nc, stream);
    await publishAll(t.context.nc, `${stream}.in`, lines);
    return ssc.jetstreamStream({ stream });
  }
  // Everything on the first connection, which stays open (a reconnect would get the lines again).
  let sent = false;
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    if (!sent) socket.write(`${lines.join('\n')}\n`);
    sent = true;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return ssc.socketTextStream('127.0.0.1', (server.address() as net.AddressInfo).port);
}

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
test.after.always(() => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
});

async function run(
  t: { context: NatsSuite },
  extra: Partial<StreamingContextConfig>,
  kind: 'jetstream' | 'socket' = 'jetstream',
): Promise<Run> {
  const ssc = new StreamingContext({
    appName: uniq('bp'),
    batchDuration: BATCH_MS,
    partitions: 1,
    logger: quiet,
    nats: { url: t.context.server.url },
    ...extra,
  });
  t.context.contexts.push(ssc);
  const done = new Tally();
  const started = new Tally();
  const delays: number[] = [];
  const sizes: number[] = [];
  ssc.addStreamingListener({
    onBatchStarted: ({ schedulingDelayMs }) => {
      delays.push(schedulingDelayMs);
      started.add();
    },
    onBatchCompleted: ({ records }) => {
      if (records > 0) sizes.push(records);
      done.add(records);
    },
  });
  (await input(t, kind, ssc))
    .map((m) => {
      blockFor(RECORD_MS);
      return m;
    })
    .foreachBatch(() => {});
  await ssc.start();
  await done.until(MESSAGES);
  // The batches generated while the last records were processed start now: their delay counts too.
  await started.until(started.count + 3);
  await ssc.stop();
  return { delays, sizes };
}

test.serial('backpressure - without it, a source faster than the app makes the scheduling delay grow past two batches', async (t) => {
  t.timeout(120_000);
  const { delays, sizes } = await run(t, {});
  t.log(`batch sizes ${sizes.join(' ')}; max scheduling delay ${Math.max(...delays)} ms`);
  t.is(sizes[0], MESSAGES, 'the first batch takes everything');
  t.true(Math.max(...delays) > 2 * BATCH_MS, `max scheduling delay ${Math.max(...delays)} ms`);
});

test.serial('backpressure - with it, batches follow the processing rate and the delay stays under two batches', async (t) => {
  t.timeout(120_000);
  const { delays, sizes } = await run(t, { backpressure: { initialRate: 100 } });
  t.log(`batch sizes ${sizes.join(' ')}; scheduling delays ${delays.join(' ')} ms`);
  t.true(Math.max(...delays) < 2 * BATCH_MS, `max scheduling delay ${Math.max(...delays)} ms`);
  t.is(sizes[0], (100 * BATCH_MS) / 1000, 'the first batch takes the initial rate');
  // The app processes 1000 / RECORD_MS = 500 records/s: no batch needs much more than that.
  t.true(Math.max(...sizes) <= (1.5 * (1000 / RECORD_MS) * BATCH_MS) / 1000, `largest batch ${Math.max(...sizes)}`);
});

test.serial('backpressure - a socket receiver: batches follow the processing rate, the delay stays under two batches', async (t) => {
  t.timeout(120_000);
  const { delays, sizes } = await run(t, { backpressure: { initialRate: 100 } }, 'socket');
  t.log(`batch sizes ${sizes.join(' ')}; scheduling delays ${delays.join(' ')} ms`);
  t.true(Math.max(...delays) < 2 * BATCH_MS, `max scheduling delay ${Math.max(...delays)} ms`);
  t.true(Math.max(...sizes) <= (1.5 * (1000 / RECORD_MS) * BATCH_MS) / 1000, `largest batch ${Math.max(...sizes)}`);
});

test.serial('backpressure - a socket receiver without it: one batch takes all, the delay grows', async (t) => {
  t.timeout(120_000);
  const { delays, sizes } = await run(t, {}, 'socket');
  t.log(`batch sizes ${sizes.join(' ')}; max scheduling delay ${Math.max(...delays)} ms`);
  t.true(Math.max(...delays) > 2 * BATCH_MS, `max scheduling delay ${Math.max(...delays)} ms`);
});

test.serial('backpressure - maxRatePerPartition caps every batch', async (t) => {
  t.timeout(120_000);
  const { sizes } = await run(t, { maxRatePerPartition: 400, backpressure: false });
  t.true(
    sizes.every((n) => n <= (400 * BATCH_MS) / 1000),
    `sizes ${sizes.join(' ')}`,
  );
  t.is(
    sizes.reduce((a, b) => a + b, 0),
    MESSAGES,
  );
});

test('backpressure - bad settings are refused when the context is made', (t) => {
  const base = { appName: 'bp-bad', batchDuration: 1000 };
  t.throws(() => new StreamingContext({ ...base, maxRatePerPartition: 0 }), { code: 'INVALID_CONFIG', message: /maxRatePerPartition/ });
  t.throws(() => new StreamingContext({ ...base, backpressure: { initialRate: -1 } }), {
    code: 'INVALID_CONFIG',
    message: /backpressure.initialRate must be a positive number/,
  });
  t.throws(() => new StreamingContext({ ...base, backpressure: { integral: Number.NaN } }), {
    code: 'INVALID_CONFIG',
    message: /backpressure.integral/,
  });
});
