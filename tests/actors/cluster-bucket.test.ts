/**
 * The cluster bucket is read every second by the driver and every worker. nats-server
 * 2.15 refuses a stream's 1,001st consumer, and `kv.keys()` left one behind per call
 * for 5 minutes: a cluster stopped reading its workers after minutes and never ran a
 * batch again. Reads now leave none, however many there are.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import test from 'ava';
import { keysOf, openClusterBucket, readWorkers } from '../../actors/membership.ts';
import { encodeValue } from '../../runtime/base/cbor.ts';
import { connectTo, startNatsServer } from '../helpers/nats-server.ts';

test('cluster bucket - 1,200 reads of the workers leave no consumer behind', async (t) => {
  t.timeout(120_000);
  const server = await startNatsServer();
  const nc = await connectTo(server.url);
  try {
    const kv = await openClusterBucket(nc, 'bucket-reads', 1, 3000);
    for (const id of ['w1', 'w2', 'w3']) await kv.put(`workers.${id}`, encodeValue({ id, graph: 'g' }));
    await kv.put('leases.0', encodeValue({ worker: 'w1', epoch: 1 }));
    await kv.put('workers.w4', encodeValue({ id: 'w4', graph: 'g' }));
    await kv.delete('workers.w4');
    for (let i = 0; i < 1200; i++) {
      const workers = await readWorkers(kv);
      if (workers.length !== 3) t.fail(`read ${i}: ${workers.length} workers`);
    }
    t.deepEqual((await keysOf(kv, 'workers.*')).sort(), ['workers.w1', 'workers.w2', 'workers.w3', 'workers.w4']);
    t.deepEqual(
      (await readWorkers(kv)).map((w) => w.info.id),
      ['w1', 'w2', 'w3'],
      'a deleted registration is not a worker',
    );
    const info = await (await jetstreamManager(nc)).streams.info('KV_TRIBUTARY_bucket-reads_CLUSTER');
    t.is(info.state.consumer_count, 0);
  } finally {
    await nc.close();
    await server.stop();
  }
});
