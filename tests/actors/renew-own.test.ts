/**
 * A lease renewal whose reply was lost (a server restarting) took effect anyway: the
 * next renewal, on the old revision, must find its own value and keep the lease,
 * not fence a healthy driver or worker. A revision moved by anyone else still loses it.
 */
import test from 'ava';
import { isCasFailure, openClusterBucket, renewOwn } from '../../actors/membership.ts';
import { encodeValue } from '../../runtime/base/cbor.ts';
import { connectTo, startNatsServer } from '../helpers/nats-server.ts';

test('renewOwn - a renewal that took effect without its reply is recognised; another holder is not', async (t) => {
  const server = await startNatsServer();
  const nc = await connectTo(server.url);
  try {
    const kv = await openClusterBucket(nc, 'renew-own', 1, 3000);
    const mine = encodeValue({ worker: 'w1', epoch: 3 });
    const first = await kv.create('lease.0', mine);
    // The renewal that reached the server while its reply was lost.
    const applied = await kv.update('lease.0', mine, first);
    t.is(await renewOwn(kv, 'lease.0', mine, first), applied, 'the revision of our own value is adopted');
    const renewed = await renewOwn(kv, 'lease.0', mine, applied);
    t.true(renewed > applied, 'and renewing goes on from it');

    await kv.update('lease.0', encodeValue({ worker: 'w2', epoch: 4 }), renewed);
    const lost = await renewOwn(kv, 'lease.0', mine, renewed).catch((error: unknown) => error);
    t.true(isCasFailure(lost), 'another holder took it: lost');
    await kv.delete('lease.0');
    const revoked = await renewOwn(kv, 'lease.0', mine, renewed).catch((error: unknown) => error);
    t.true(isCasFailure(revoked), 'revoked: lost');
  } finally {
    await nc.close();
    await server.stop();
  }
});
