/**
 * The driver joining its cluster: registers itself (with its graph) in the cluster
 * bucket, waits for enough live workers whose graph matches (a clear line while it
 * waits; a worker with another graph is refused, naming the differences), opens its
 * end of the data plane and assigns the partition slots: the journaled assignment
 * again when its workers are all back, else a fresh rendezvous one.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { KV } from '@nats-io/kv';
import type { NatsConnection, Status } from '@nats-io/transport-node';
import { decodeValue, encodeValue } from '../runtime/base/cbor.ts';
import { delayMs } from '../runtime/base/clock.ts';
import { FencedError, InvalidConfigError } from '../runtime/base/errors.ts';
import { type Logger, reasonOf } from '../runtime/base/logger.ts';
import { compareFingerprints } from '../runtime/graph/fingerprint.ts';
import type { Plan } from '../runtime/graph/plan.ts';
import type { FingerprintEntry } from '../runtime/graph/wire.ts';
import { assign } from './assignment.ts';
import {
  ABSENT_CONFIRM_MS,
  isCasFailure,
  keepRegistered,
  LEASE_MS_DEFAULT,
  Liveness,
  openClusterBucket,
  Presence,
  readWorkers,
  renewOwn,
  retryingKv,
  revokeLeases,
  type WorkerInfo,
} from './membership.ts';
import { NatsTransport } from './transport/nats.ts';
import { type AssignmentWire, DRIVER } from './transport/transport.ts';

/** What joining needs. */
export interface JoinClusterOptions {
  readonly nc: NatsConnection;
  readonly appName: string;
  readonly replicas: number;
  readonly plan: Plan;
  readonly keys: ReadonlyMap<number, string>;
  readonly graph: readonly FingerprintEntry[];
  /** Workers to wait for. */
  readonly workers: number;
  readonly leaseMs?: number | undefined;
  /** Epoch of the assignment (the journal's writer epoch). */
  readonly epoch: number;
  /** The assignment journaled last, by input key. */
  readonly previous?: { readonly slots: readonly string[]; readonly inputs: Readonly<Record<string, string>> } | undefined;
  /** Give up waiting for workers after this long (default: wait forever). */
  readonly waitMs?: number | undefined;
  readonly logger: Logger;
  /** Told every few seconds while the driver waits (the CLI prints it). */
  readonly onWaiting?: ((text: string) => void) | undefined;
}

/** The driver's place in a cluster. */
export interface JoinedCluster {
  readonly transport: NatsTransport;
  readonly assignment: AssignmentWire;
  /** The assignment with inputs named by their stable keys (as journaled). */
  readonly journaled: { readonly slots: readonly string[]; readonly inputs: Readonly<Record<string, string>> };
  readonly workers: readonly WorkerInfo[];
  /** Names this driver run; workers serving another run give their leases back. */
  readonly session: string;
  /** How long the driver waited for its workers (ms). */
  readonly waitedMs: number;
  /**
   * Calls `onChange` with the assigned workers lost (not renewed for a lease: see
   * Liveness), leaving or joined, checked after every read of the bucket (every tenth
   * of the lease time) until left.
   */
  watch(assigned: () => readonly string[], onChange: (change: MembershipChange) => void): void;
  /** A new assignment over the live workers other than `lost` (waits for one if none is left). */
  reassign(lost: readonly string[], epoch: number): Promise<{ assignment: AssignmentWire; journaled: JournaledAssignment }>;
  leave(): Promise<void>;
}

/** What the driver's watch saw change among the workers. */
export interface MembershipChange {
  /** Assigned workers not renewed for a lease of successful reads (killed, paused, cut off), or gone (`closed`). */
  readonly lost: string[];
  /** The lost workers whose NATS connections closed (a killed process): seen within a second, not a lease. */
  readonly closed: string[];
  /** Assigned workers stopping gracefully (waiting to hand over). */
  readonly leaving: string[];
  /** Live workers with the driver's graph that hold no assignment yet. */
  readonly joined: string[];
}

/** An assignment with inputs named by their stable keys. */
export interface JournaledAssignment {
  readonly slots: readonly string[];
  readonly inputs: Readonly<Record<string, string>>;
}

const WAIT_REPORT_MS = 2000;

/** What holding the driver lease needs. */
export interface DriverLeaseOptions {
  readonly nc: NatsConnection;
  readonly appName: string;
  readonly replicas: number;
  readonly leaseMs?: number | undefined;
  /** Wait for the active driver to go instead of refusing to start. */
  readonly standby: boolean;
  readonly logger: Logger;
  readonly onWaiting?: ((text: string) => void) | undefined;
  /** Called once if the lease is lost while held (a pause past the lease time). */
  readonly onLost?: ((error: Error) => void) | undefined;
}

/** The driver lease, held. */
export interface DriverLease {
  /** How long this driver waited for it (ms): a standby's wait for the active one. */
  readonly waitedMs: number;
  release(): Promise<void>;
}

/**
 * Takes the app's driver lease (`driver-lease` in the cluster bucket, created with
 * compare-and-set and renewed on its revision): one active driver per app. Another
 * driver's live lease (renewed while watched) refuses the start, or, as a standby,
 * waits until it stands still for a lease (the active driver died) and takes over.
 * The journal's fencing stays the guarantee of one writer; the lease decides who tries.
 *
 * @example
 * const lease = await holdDriverLease({ nc, appName, replicas: 1, standby: true, logger });
 */
export async function holdDriverLease(o: DriverLeaseOptions): Promise<DriverLease> {
  const leaseMs = o.leaseMs ?? LEASE_MS_DEFAULT;
  const kv = await openClusterBucket(o.nc, o.appName, o.replicas, leaseMs);
  const value = encodeValue({ pid: process.pid, host: hostname(), startedAt: Date.now() });
  const started = performance.now();
  const seen = new Liveness(leaseMs);
  let revision: number | undefined;
  let reported = false;
  // A holder is active while its lease keeps being renewed; one quiet for a whole lease died (its entry
  // outlives it: see membership.ts): the lease is taken over on the revision last seen.
  while (revision === undefined) {
    try {
      const entry = await kv.get('driver-lease');
      if (entry === null || entry.operation !== 'PUT' || entry.value.length === 0) {
        revision = await kv.create('driver-lease', value);
        break;
      }
      seen.observe(new Map([['driver-lease', entry.revision]]));
      if (seen.isLost('driver-lease')) {
        revision = await kv.update('driver-lease', value, entry.revision);
        break;
      }
      const holder = decodeValue(entry.value) as { pid: number; host: string };
      if (seen.isLive('driver-lease')) {
        if (!o.standby) {
          throw new InvalidConfigError(
            `another driver of ${o.appName} is running (pid ${holder.pid} on ${holder.host}); start this one with --standby to take over when it stops`,
          );
        }
        if (!reported) {
          reported = true;
          const text = `standby: waiting for the active driver of ${o.appName} (pid ${holder.pid} on ${holder.host}) to stop`;
          o.logger.info({ holder }, text);
          o.onWaiting?.(text);
        }
      }
    } catch (error) {
      if (error instanceof InvalidConfigError) throw error;
      // Lost a race for the lease (read again), or the bucket is out of reach for the moment.
      if (!isCasFailure(error)) seen.unavailable();
    }
    await delayMs(Math.max(50, Math.floor(leaseMs / 10)));
  }
  const waitedMs = performance.now() - started;
  let held = revision;
  let released = false;
  const timer = setInterval(
    () => {
      renewOwn(kv, 'driver-lease', value, held).then(
        (next) => {
          held = next;
        },
        (error: unknown) => {
          // A renewal that failed for a moment (a server restart, an election) is tried again next time;
          // only a revision that moved (another driver took the lease) means it is lost.
          if (released || !/wrong last sequence/i.test(String((error as Error).message))) return;
          released = true;
          clearInterval(timer);
          const lost = new FencedError(`the driver lease of ${o.appName} was lost: another driver may be active`, { cause: error });
          o.logger.error({ err: lost }, 'driver lease lost');
          o.onLost?.(lost);
        },
      );
    },
    Math.max(100, Math.floor(leaseMs / 3)),
  );
  return {
    waitedMs,
    release: async () => {
      if (released) return;
      released = true;
      clearInterval(timer);
      await kv.delete('driver-lease', { previousSeq: held }).catch(() => {});
    },
  };
}

/** The driver's view of the registered workers: the bucket read every tenth of the lease, liveness observed. */
class MemberView {
  readonly #kv: KV;
  readonly #logger: Logger;
  readonly #seen: Liveness;
  #entries: WorkerInfo[] = [];
  readonly #timer: NodeJS.Timeout;
  #reading = false;
  #listener: (() => void) | undefined;

  constructor(kv: KV, leaseMs: number, logger: Logger) {
    this.#kv = kv;
    this.#logger = logger;
    this.#seen = new Liveness(leaseMs);
    this.#timer = setInterval(() => void this.#read(), Math.max(50, Math.floor(leaseMs / 10)));
    this.#timer.unref();
    void this.#read();
  }

  /** Registered workers seen renewing. */
  live(excluded: ReadonlySet<string> = new Set()): WorkerInfo[] {
    return this.#entries.filter((w) => !excluded.has(w.id) && this.#seen.isLive(w.id));
  }

  /** Every registration read last, renewed or not (a worker refused for its graph may be gone already). */
  registered(): WorkerInfo[] {
    return this.#entries;
  }

  isLive(id: string): boolean {
    return this.#seen.isLive(id);
  }

  /** Calls `listener` after every successful read (one at a time). */
  onRead(listener: (() => void) | undefined): void {
    this.#listener = listener;
  }

  /** True once `id` stood still for a lease of successful reads, or vanished. */
  isLost(id: string): boolean {
    return this.#seen.isLost(id);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async #read(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    const started = performance.now();
    try {
      const entries = await readWorkers(this.#kv);
      const ms = performance.now() - started;
      if (ms > 1000) this.#logger.warn({ ms: Math.round(ms), entries: entries.length }, 'reading the workers was slow');
      this.#seen.observe(new Map(entries.map((e) => [e.info.id, e.revision])));
      this.#entries = entries.map((e) => e.info);
      this.#listener?.();
    } catch (error) {
      this.#seen.unavailable();
      this.#logger.warn({ reason: reasonOf(error) }, 'reading the workers failed; trying again');
    } finally {
      this.#reading = false;
    }
  }
}

/**
 * Asks workers' presence subjects, one question per worker at a time, and forgets
 * every absence when the driver's own connection drops (see Presence).
 */
class PresenceProbe {
  readonly #transport: NatsTransport;
  readonly #presence: Presence;
  readonly #timeoutMs: number;
  readonly #asking = new Set<string>();
  readonly #status: AsyncIterable<Status> & { stop?: () => void };
  #stopped = false;

  constructor(nc: NatsConnection, transport: NatsTransport, presence: Presence, leaseMs: number) {
    this.#transport = transport;
    this.#presence = presence;
    // Short: a question in flight when its worker died gets no answer, and none is asked again
    // meanwhile; a live worker slower than this only counts as unknown.
    this.#timeoutMs = Math.max(100, Math.min(500, Math.floor(leaseMs / 6)));
    const status = nc.status();
    this.#status = status;
    void (async () => {
      for await (const s of status) {
        if (s.type === 'disconnect' || s.type === 'reconnecting' || s.type === 'reconnect' || s.type === 'staleConnection')
          presence.disconnected();
      }
    })().catch(() => {});
  }

  ask(workers: readonly string[]): void {
    for (const w of new Set(workers)) {
      if (this.#stopped || this.#asking.has(w)) continue;
      this.#asking.add(w);
      void this.#transport.presence(w, this.#timeoutMs).then((answer) => {
        this.#asking.delete(w);
        if (!this.#stopped) this.#presence.observe(w, answer);
      });
    }
  }

  stop(): void {
    this.#stopped = true;
    this.#status.stop?.();
  }
}

/**
 * Joins (or forms) the cluster of an app as its driver.
 *
 * @example
 * const joined = await joinCluster({ nc, appName, replicas: 1, plan, keys, graph, workers: 3, epoch: 1, logger });
 */
export async function joinCluster(o: JoinClusterOptions): Promise<JoinedCluster> {
  if (!Number.isSafeInteger(o.workers) || o.workers < 1)
    throw new InvalidConfigError(`workers must be a whole number >= 1, got ${o.workers}`);
  const leaseMs = o.leaseMs ?? LEASE_MS_DEFAULT;
  const kv = await openClusterBucket(o.nc, o.appName, o.replicas, leaseMs);
  const session = randomBytes(6).toString('hex');
  const registration = await keepRegistered(kv, 'driver', { graph: o.graph, pid: process.pid, epoch: o.epoch, session }, leaseMs, o.logger);
  const view = new MemberView(kv, leaseMs, o.logger);
  const unregister = async () => {
    view.stop();
    await registration.stop();
  };
  try {
    const started = performance.now();
    const workers = await waitForWorkers(view, o, started);
    // Leases of workers that are gone (a crash before this driver started) are taken back now.
    await retryingKv('revoke the leases of gone workers', o.logger, () => revokeLeases(kv, (w) => !view.isLive(w)));
    const waitedMs = performance.now() - started;
    const transport = await NatsTransport.open(o.nc, o.appName, DRIVER, { logger: o.logger });
    const presence = new Presence(ABSENT_CONFIRM_MS);
    const probe = new PresenceProbe(o.nc, transport, presence, leaseMs);
    const slots = Math.max(1, ...[...o.plan.byId.values()].map((n) => n.partitions));
    const inputIds = o.plan.inputs.map((n) => n.id);
    const ids = workers.map((w) => w.id);
    let assignment = assign(slots, inputIds, ids, o.epoch);
    const prev = o.previous;
    // A restarted driver resumes the journaled assignment when every worker in it is back.
    if (prev && prev.slots.length === slots && [...prev.slots, ...Object.values(prev.inputs)].every((w) => ids.includes(w))) {
      const inputs: Record<string, string> = {};
      for (const id of inputIds) {
        const w = prev.inputs[o.keys.get(id) as string];
        inputs[String(id)] = w ?? (assignment.inputs[String(id)] as string);
      }
      assignment = { epoch: o.epoch, slots: [...prev.slots], inputs };
    }
    const journal = (a: AssignmentWire): JournaledAssignment => {
      const inputs: Record<string, string> = {};
      for (const id of inputIds) inputs[o.keys.get(id) as string] = a.inputs[String(id)] as string;
      return { slots: a.slots, inputs };
    };
    o.logger.info({ workers: ids, slots: assignment.slots, waitedMs: Math.round(waitedMs) }, 'cluster formed');
    /** Workers the last (re)assignment was made over, with or without slots: not "joined" again. */
    let considered = new Set(ids);
    return {
      transport,
      assignment,
      journaled: journal(assignment),
      workers,
      session,
      waitedMs,
      watch: (assigned, onChange) => {
        // Checked after every read of the bucket: a loss is acted on as soon as it can be seen.
        view.onRead(() => {
          const live = view.live();
          const mine = new Set(assigned());
          probe.ask([...mine, ...live.map((w) => w.id)]);
          const closed = [...mine].filter((w) => !view.isLost(w) && presence.isGone(w));
          const lost = [...mine].filter((w) => view.isLost(w) || closed.includes(w));
          if (closed.length > 0)
            o.logger.info({ closed }, `workers ${closed.join(', ')} closed their connections: lost without waiting for a lease`);
          const leaving = live.filter((w) => mine.has(w.id) && w.leaving === true).map((w) => w.id);
          const joined = live
            .filter(
              (w) =>
                !mine.has(w.id) &&
                !considered.has(w.id) &&
                w.leaving !== true &&
                !presence.isAbsent(w.id) &&
                compareFingerprints(o.graph, w.graph).length === 0,
            )
            .map((w) => w.id);
          if (lost.length > 0 || leaving.length > 0 || joined.length > 0) onChange({ lost, closed, leaving, joined });
        });
      },
      reassign: async (lost, epoch) => {
        const lostSet = new Set(lost);
        const live = (await waitForWorkers(view, { ...o, workers: 1 }, performance.now(), lostSet, true)).filter(
          (w, _i, all) => w.leaving !== true || all.every((x) => x.leaving === true),
        );
        // Leases of lost workers, and of any holder not live now (lost earlier, its revocation missed while
        // the bucket was out of reach), are taken back: a holder that comes back commits nothing and rejoins.
        const liveIds = new Set(live.map((w) => w.id));
        await retryingKv('revoke the leases of lost workers', o.logger, () =>
          revokeLeases(kv, (w) => lostSet.has(w) || (!liveIds.has(w) && !view.isLive(w))),
        );
        considered = new Set(live.map((w) => w.id));
        const next = assign(
          slots,
          inputIds,
          live.map((w) => w.id),
          epoch,
        );
        o.logger.info({ without: lost, workers: live.map((w) => w.id), slots: next.slots }, 'slots reassigned');
        return { assignment: next, journaled: journal(next) };
      },
      leave: async () => {
        view.onRead(undefined);
        probe.stop();
        await transport.close();
        await unregister();
      },
    };
  } catch (error) {
    await unregister();
    throw error;
  }
}

/** Waits for `o.workers` live workers with the driver's graph; returns that many (every live one with `all`). */
async function waitForWorkers(
  view: MemberView,
  o: JoinClusterOptions,
  started: number,
  excluded: ReadonlySet<string> = new Set(),
  all = false,
): Promise<WorkerInfo[]> {
  const refused = new Set<string>();
  let reportedAt = Number.NEGATIVE_INFINITY;
  for (;;) {
    const live: WorkerInfo[] = [];
    for (const w of view.registered()) {
      if (excluded.has(w.id)) continue;
      const differences = compareFingerprints(o.graph, w.graph);
      if (differences.length === 0) {
        if (view.isLive(w.id)) live.push(w);
        continue;
      }
      if (!refused.has(w.id)) {
        refused.add(w.id);
        o.logger.error(
          { worker: w.id, differences },
          `worker ${w.id} refused: its app graph differs from the driver's: ${differences.join('; ')}`,
        );
        o.onWaiting?.(`worker ${w.id} refused: its app graph differs from the driver's: ${differences.join('; ')}`);
      }
    }
    if (live.length >= o.workers) return all ? live : live.slice(0, o.workers);
    const now = performance.now();
    if (o.waitMs !== undefined && now - started > o.waitMs) {
      throw new InvalidConfigError(
        `${o.appName}: ${live.length} of ${o.workers} workers registered after ${Math.round(o.waitMs / 1000)} s; start them with \`tributary worker <app> --nats <url>\``,
      );
    }
    if (now - reportedAt >= WAIT_REPORT_MS) {
      reportedAt = now;
      const text = `waiting for ${o.workers} workers of ${o.appName}: ${live.length} registered${live.length ? ` (${live.map((w) => w.id).join(', ')})` : ''}; start them with \`tributary worker <app> --nats <url>\``;
      o.logger.info({ registered: live.length, wanted: o.workers }, text);
      o.onWaiting?.(text);
    }
    await delayMs(200);
  }
}
