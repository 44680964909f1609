/**
 * Liveness as the driver observes it: a key renewed keeps moving, a key quiet for a
 * whole lease of successful reads is lost, and time without successful reads (a KV
 * election longer than the lease) proves nothing either way. Presence: a worker
 * whose connection closed is gone after a second of "no responders".
 */
import test from 'ava';
import { Liveness, Presence } from '../../actors/membership.ts';

const LEASE = 3000;

test('liveness - a key is live once its revision moved, lost after a lease of reads without a move', (t) => {
  const seen = new Liveness(LEASE);
  seen.observe(new Map([['w1', 5]]), 0);
  t.false(seen.isLive('w1'), 'one read cannot tell a renewed key from a dead one');
  t.false(seen.isLost('w1'));
  seen.observe(new Map([['w1', 6]]), 1000);
  t.true(seen.isLive('w1'));
  seen.observe(new Map([['w1', 6]]), 2000);
  seen.observe(new Map([['w1', 6]]), 3500);
  t.false(seen.isLost('w1'), '2.5 s quiet: not yet a lease');
  seen.observe(new Map([['w1', 6]]), 4100);
  t.true(seen.isLost('w1'));
  t.false(seen.isLive('w1'));
  t.is(seen.revision('w1'), 6);
});

test('liveness - a stretch without successful reads (an election) does not count towards the lease', (t) => {
  const seen = new Liveness(LEASE);
  seen.observe(new Map([['w1', 1]]), 0);
  seen.observe(new Map([['w1', 2]]), 1000);
  // The bucket has no leader for 7 s: neither the worker's renewals nor the driver's reads get through.
  seen.unavailable();
  seen.observe(new Map([['w1', 2]]), 8000);
  t.false(seen.isLost('w1'), 'the 7 s outage is not the worker going quiet');
  seen.observe(new Map([['w1', 3]]), 8500);
  t.true(seen.isLive('w1'));
  // A worker that really died during the outage is lost a lease after reads resume.
  seen.unavailable();
  seen.observe(new Map([['w1', 3]]), 20_000);
  seen.observe(new Map([['w1', 3]]), 22_000);
  t.false(seen.isLost('w1'));
  seen.observe(new Map([['w1', 3]]), 23_100);
  t.true(seen.isLost('w1'));
});

test('liveness - a key that vanished is lost; one that comes back is new', (t) => {
  const seen = new Liveness(LEASE);
  seen.observe(new Map([['w1', 1]]), 0);
  seen.observe(new Map([['w1', 2]]), 500);
  seen.observe(new Map(), 1000);
  t.true(seen.isLost('w1'));
  seen.observe(new Map([['w1', 9]]), 1500);
  t.false(seen.isLost('w1'));
  t.false(seen.isLive('w1'), 'seen once again: not yet proven renewed');
  t.false(seen.isLost('unknown'), 'a key never seen is not declared lost');
});

test('presence - a worker without subscribers for the confirm time is gone; one answer or a driver reconnect clears it', (t) => {
  const presence = new Presence(1000);
  presence.observe('w1', 'absent', 0);
  t.true(presence.isAbsent('w1'));
  t.false(presence.isGone('w1', 900), 'a reconnecting worker is absent for a moment');
  presence.observe('w1', 'absent', 600);
  t.true(presence.isGone('w1', 1000), 'counted from the first absence');
  presence.observe('w1', 'present', 1100);
  t.false(presence.isAbsent('w1'));
  t.false(presence.isGone('w1', 5000));
  presence.observe('w1', 'absent', 6000);
  presence.disconnected();
  t.false(presence.isGone('w1', 8000), "absences seen before the driver's own reconnect prove nothing");
});

test('presence - no answer (a paused process keeps its connection) is not an absence', (t) => {
  const presence = new Presence(1000);
  presence.observe('w1', 'unknown', 0);
  presence.observe('w1', 'unknown', 5000);
  t.false(presence.isAbsent('w1'));
  t.false(presence.isGone('w1', 10_000));
});
