/**
 * A receiver on a cluster: socketTextStream runs on the worker the driver assigns
 * it, which writes each block it cuts ahead to a JetStream log; batches are ranges
 * of that log, read on the workers, so no record passes through the driver. A
 * driver killed mid-stream (lines keep arriving meanwhile) is replaced, and every
 * line is counted exactly once.
 */
import * as net from 'node:net';
import test from 'ava';
import { StreamingContext } from '../../runtime/api/index.ts';
import { buildClusterApp } from '../helpers/cluster-apps.ts';
import { startWorkers, stopWorkers } from '../helpers/cluster-kit.ts';
import { within } from '../helpers/jetstream-journal-kit.ts';
import { startNatsServer } from '../helpers/nats-server.ts';

const BATCH_MS = 200;

/** A line server: every connection gets what `send` writes from then on. */
async function lineServer(): Promise<{ port: number; connected: Promise<void>; send(lines: string[]): void; close(): void }> {
  const sockets: net.Socket[] = [];
  let onConnect: () => void = () => {};
  const connected = new Promise<void>((resolve) => {
    onConnect = resolve;
  });
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    onConnect();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connected,
    send: (lines) => {
      for (const s of sockets) s.write(`${lines.join('\n')}\n`);
    },
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

function wave(n: number, offset: number): string[] {
  return Array.from({ length: n }, (_, i) => `w${(i + offset) % 7} x${(i + offset) % 3}`);
}

function expectedCounts(lines: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of lines) for (const w of l.split(' ')) out[w] = (out[w] ?? 0) + 1;
  return out;
}

test('cluster - socketTextStream runs on a worker; lines sent across a driver crash are counted exactly once', async (t) => {
  t.timeout(180_000);
  const nats = await startNatsServer();
  const lines = await lineServer();
  const appArgs = [`--port=${lines.port}`, `--batch-ms=${BATCH_MS}`];
  const workers = await startWorkers(nats.url, 'socket', 2, 'sock', { checkpoint: nats.url, appArgs });
  try {
    let latest: Record<string, number> = {};
    let waiting: { total: number; resolve(): void } | undefined;
    const emit = (_o: string, _t: number, records: unknown[]) => {
      latest = Object.fromEntries(records as [string, number][]);
      const total = Object.values(latest).reduce((a, b) => a + b, 0);
      if (waiting && total >= waiting.total) waiting.resolve();
    };
    const totalReaches = (total: number) => new Promise<void>((resolve) => (waiting = { total, resolve }));
    const driver = () =>
      StreamingContext.getOrCreate(nats.url, () => {
        const ssc = buildClusterApp('socket', { port: lines.port, batchMs: BATCH_MS, checkpoint: nats.url, emit });
        ssc.cluster(nats.url, { workers: 2 });
        return ssc;
      });

    const one = await driver();
    await one.start();
    await within(lines.connected, 30_000, 'the worker running the receiver connecting');
    const first = wave(300, 0);
    const reached = totalReaches(600);
    lines.send(first);
    await within(reached, 60_000, 'the first wave counted');
    t.deepEqual(latest, expectedCounts(first));
    one.crash();

    // Lines arriving while no driver runs wait in the receiver on its worker.
    const second = wave(200, 300);
    lines.send(second);
    const two = await driver();
    const all = totalReaches(1000);
    await two.start();
    await within(all, 60_000, 'both waves counted');
    t.deepEqual(latest, expectedCounts([...first, ...second]));
    await two.stop();
  } finally {
    await stopWorkers(workers);
    lines.close();
    await nats.stop();
  }
});
