/**
 * Who is in the cluster, and who owns which partition slot, held by NATS itself:
 * one KV bucket per app (`TRIBUTARY_<app>_CLUSTER`). `workers.<id>` is a worker's
 * registration (its graph fingerprint included), `driver` the driver's, `leases.<q>`
 * the lease of slot q: `{ worker, epoch }`, taken with create (compare-and-set on
 * "absent") and renewed with update on the revision the holder last wrote.
 *
 * Liveness is observed, not read from expiry: a key renewed every third of the
 * lease is live while its revision keeps moving; one that stood still for a whole
 * lease of successful reads is lost (see {@link Liveness}). A KV leader election on a
 * 3-node cluster takes 4-7 s, longer than the 3 s lease: while nobody can read or
 * write, nobody is declared lost, and nobody can take a lease either. Entries expire
 * only as garbage, ten leases after their last write. The driver revokes the leases
 * of a worker it declared lost (compare-and-set on the revision it saw), so a worker
 * paused or cut off past its lease finds the revision moved: its next renewal fails
 * and it may commit nothing (FencedError).
 */
import { JetStreamApiError, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { Bucket, type KV, Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { decodeValue, encodeValue } from '../runtime/base/cbor.ts';
import { delayMs } from '../runtime/base/clock.ts';
import { FencedError, InvalidStateError } from '../runtime/base/errors.ts';
import { type Logger, reasonOf } from '../runtime/base/logger.ts';
import type { FingerprintEntry } from '../runtime/graph/wire.ts';
import type { PresenceAnswer } from './transport/nats.ts';

/** Default lease time: a silent worker loses its slots after this long. */
export const LEASE_MS_DEFAULT = 3000;

/** Entries of the bucket expire this many leases after their last write (garbage; liveness is observed). */
const TTL_IN_LEASES = 10;

/** Longest a holder that cannot reach the bucket keeps trying to prove its leases before giving up. */
const PROVE_WAIT_MS = 30_000;

/**
 * Runs a bucket operation again while the bucket cannot be reached (a server
 * restart, an election), at most `PROVE_WAIT_MS`; a lost compare-and-set is final.
 *
 * @example
 * await retryingKv('revoke leases', logger, () => revokeLeases(kv, lost));
 */
export async function retryingKv<T>(what: string, logger: Logger | undefined, op: () => Promise<T>): Promise<T> {
  const started = performance.now();
  for (;;) {
    try {
      return await op();
    } catch (error) {
      if (isCasFailure(error) || performance.now() - started > PROVE_WAIT_MS) throw error;
      logger?.warn({ reason: reasonOf(error), what }, 'the cluster bucket cannot be reached; trying again');
      await delayMs(250);
    }
  }
}

/**
 * True for a compare-and-set that lost: the key's revision moved (another writer took
 * it, or it was revoked). Anything else (a timeout, no leader yet) may pass.
 *
 * @example
 * if (isCasFailure(error)) lost(); else retryLater();
 */
export function isCasFailure(error: unknown): boolean {
  return /wrong last sequence/i.test(String((error as Error | undefined)?.message ?? error));
}

/** A worker's registration. */
export interface WorkerInfo {
  readonly id: string;
  readonly pid: number;
  readonly host: string;
  readonly graph: readonly FingerprintEntry[];
  readonly startedAt: number;
  /** Set by a worker stopping gracefully: it waits until its slots were handed over. */
  readonly leaving?: boolean;
}

/** A registration kept alive; its value can change (a worker announcing it leaves). */
export interface Registration {
  update(value: unknown): Promise<void>;
  stop(): Promise<void>;
}

/** A slot's lease. */
export interface Lease {
  readonly worker: string;
  readonly epoch: number;
}

/** The bucket's name for `app`. */
export function clusterBucket(app: string): string {
  return `TRIBUTARY_${app}_CLUSTER`;
}

/**
 * Opens (creating if needed) the cluster bucket of `app`.
 *
 * @example
 * const kv = await openClusterBucket(nc, 'wc', 1, 3000);
 */
export async function openClusterBucket(nc: NatsConnection, app: string, replicas: number, leaseMs: number): Promise<KV> {
  const name = clusterBucket(app);
  const kvm = new Kvm(jetstream(nc));
  const ttl = leaseMs * TTL_IN_LEASES;
  const options = { replicas, history: 1, ttl, allow_direct: false, storage: StorageType.Memory };
  try {
    const info = await (await jetstreamManager(nc, { checkAPI: false })).streams.info(`KV_${name}`);
    const existing = Math.round(info.config.max_age / 1e6);
    if (existing !== ttl)
      throw new InvalidStateError(
        `the cluster bucket ${name} has a lease time of ${existing / TTL_IN_LEASES} ms, not ${leaseMs} ms: every process of an app needs the same --lease-ms`,
      );
  } catch (error) {
    if (error instanceof JetStreamApiError && error.status === 404) return kvm.create(name, options);
    throw error;
  }
  return kvm.open(name, options);
}

/**
 * Keeps a registration alive: puts `value` under `key` now and every third of the
 * lease time until stopped.
 *
 * @example
 * const registration = await keepRegistered(kv, 'workers.w1', info, 3000, logger);
 */
export async function keepRegistered(kv: KV, key: string, value: unknown, leaseMs: number, logger?: Logger): Promise<Registration> {
  let bytes = encodeValue(value);
  await kv.put(key, bytes);
  let stopped = false;
  const timer = setInterval(
    () => {
      kv.put(key, bytes).catch((error: unknown) =>
        logger?.warn({ reason: reasonOf(error), key }, 'renewing a registration failed; retrying'),
      );
    },
    Math.max(100, Math.floor(leaseMs / 3)),
  );
  return {
    update: async (next) => {
      bytes = encodeValue(next);
      await kv.put(key, bytes);
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await kv.delete(key).catch(() => {});
    },
  };
}

/** A worker's registration as read, with the revision that tells renewals apart. */
export interface WorkerEntry {
  readonly info: WorkerInfo;
  readonly revision: number;
}

/**
 * The registrations in the bucket now (live or not: see {@link Liveness}).
 *
 * @example
 * const entries = await readWorkers(kv); // [{ info: { id: 'w-1a2b', ... }, revision: 12 }]
 */
export async function readWorkers(kv: KV): Promise<WorkerEntry[]> {
  const out: WorkerEntry[] = [];
  for (const entry of await readEntries(kv, 'workers.*')) {
    out.push({ info: decodeValue(entry.value) as WorkerInfo, revision: entry.revision });
  }
  return out.sort((a, b) => a.info.id.localeCompare(b.info.id));
}

/** The live (put, non-empty) entries under `filter`. */
async function readEntries(kv: KV, filter: string): Promise<{ key: string; revision: number; value: Uint8Array }[]> {
  const keys = await keysOf(kv, filter);
  const out: { key: string; revision: number; value: Uint8Array }[] = [];
  for (const key of keys) {
    const entry = await kv.get(key);
    if (entry === null || entry.operation !== 'PUT' || entry.value.length === 0) continue;
    out.push({ key, revision: entry.revision, value: entry.value });
  }
  return out;
}

/**
 * The keys under `filter`, each once, from the subjects of the bucket's stream. Not
 * `kv.keys()`: each call leaves an ordered consumer on the server until its inactive
 * threshold (5 minutes), and nats-server 2.15 refuses a stream's 1,001st consumer: a
 * cluster whose driver and workers read the bucket every second stopped reading it
 * after minutes ("maximum consumers limit reached") and never ran a batch again.
 *
 * @example
 * await keysOf(kv, 'workers.*') // ['workers.w-1a2b', 'workers.w-3c4d']
 */
export async function keysOf(kv: KV, filter: string): Promise<string[]> {
  if (!(kv instanceof Bucket)) throw new InvalidStateError('the cluster bucket is not a JetStream KV bucket');
  const info = await kv.jsm.streams.info(kv.bucketName(), { subjects_filter: kv.subjectForKey(filter) });
  return Object.keys(info.state.subjects ?? {}).map((subject) => kv.decodeKey(subject.substring(kv.prefixLen)));
}

/**
 * Which keys are renewed, as seen by one observer reading the bucket again and again.
 * A key is live once its revision moved while observed, and lost when it stood still
 * for a whole lease of successful reads, or vanished. Time between a failed read and
 * the next successful one does not count: a KV election longer than the lease
 * stops the renewals and the observer alike, and nobody is declared lost for it.
 *
 * @example
 * const seen = new Liveness(3000);
 * seen.observe(new Map([['workers.w1', 12]]));
 * seen.isLive('workers.w1'); // after a later read with another revision
 */
export class Liveness {
  readonly #leaseMs: number;
  readonly #keys = new Map<string, { revision: number; renewed: boolean; quietMs: number; gone: boolean }>();
  #lastReadAt: number | undefined;

  constructor(leaseMs: number) {
    this.#leaseMs = leaseMs;
  }

  /** One successful read: the revision of every key present. */
  observe(revisions: ReadonlyMap<string, number>, now = performance.now()): void {
    const elapsed = this.#lastReadAt === undefined ? 0 : now - this.#lastReadAt;
    this.#lastReadAt = now;
    for (const [key, revision] of revisions) {
      const k = this.#keys.get(key);
      if (k === undefined || k.gone) this.#keys.set(key, { revision, renewed: false, quietMs: 0, gone: false });
      else if (k.revision !== revision) Object.assign(k, { revision, renewed: true, quietMs: 0 });
      else k.quietMs += elapsed;
    }
    for (const [key, k] of this.#keys) if (!revisions.has(key)) k.gone = true;
  }

  /** A read failed: the time until the next successful one proves nothing. */
  unavailable(): void {
    this.#lastReadAt = undefined;
  }

  /** Renewed while observed, and not quiet for a lease since. */
  isLive(key: string): boolean {
    const k = this.#keys.get(key);
    return k !== undefined && !k.gone && k.renewed && k.quietMs < this.#leaseMs;
  }

  /** Seen, then quiet for a whole lease of successful reads, or gone. */
  isLost(key: string): boolean {
    const k = this.#keys.get(key);
    return k !== undefined && (k.gone || k.quietMs >= this.#leaseMs);
  }

  /** The revision last seen of `key`. */
  revision(key: string): number | undefined {
    return this.#keys.get(key)?.revision;
  }
}

/**
 * Renews `key`, held at `revision`, with `value`. A compare-and-set failure whose
 * current entry holds exactly `value` was an earlier renewal of ours that took
 * effect while its reply was lost (a server restarting): that revision is ours. Any
 * other failure is thrown (a moved revision: the key is lost; else: try again later).
 *
 * @example
 * held = await renewOwn(kv, 'driver-lease', value, held);
 */
export async function renewOwn(kv: KV, key: string, value: Uint8Array, revision: number): Promise<number> {
  try {
    return await kv.update(key, value, revision);
  } catch (error) {
    if (!isCasFailure(error)) throw error;
    const current = await kv.get(key);
    if (current?.operation === 'PUT' && current.revision > revision && Buffer.from(current.value).equals(Buffer.from(value)))
      return current.revision;
    throw error;
  }
}

/** How long a worker must have no subscriber on the servers before it counts as gone (a reconnect takes less). */
export const ABSENT_CONFIRM_MS = 1000;

/**
 * Which workers' NATS connections are gone, as the driver sees by asking each a
 * presence question: the servers answer "no responders" at once for a process whose
 * connection closed (a SIGKILL closes its sockets), so such a worker is lost without
 * waiting a lease. Only an absence that lasted `confirmMs`, with the driver's own
 * connection up all along, counts: a worker reconnecting after a server restart is
 * absent for a moment. A paused process keeps its connection and never answers
 * (`unknown`): its lease decides.
 *
 * @example
 * const presence = new Presence(1000);
 * presence.observe('w1', 'absent', 0);
 * presence.isGone('w1', 1200); // true
 */
export class Presence {
  readonly #confirmMs: number;
  readonly #absentSince = new Map<string, number>();

  constructor(confirmMs: number) {
    this.#confirmMs = confirmMs;
  }

  observe(worker: string, answer: PresenceAnswer, now = performance.now()): void {
    if (answer === 'present') this.#absentSince.delete(worker);
    else if (answer === 'absent' && !this.#absentSince.has(worker)) this.#absentSince.set(worker, now);
  }

  /** The driver's own connection dropped: absences seen so far prove nothing. */
  disconnected(): void {
    this.#absentSince.clear();
  }

  /** Absent at the last answers (not yet confirmed, maybe reconnecting). */
  isAbsent(worker: string): boolean {
    return this.#absentSince.has(worker);
  }

  /** Absent for `confirmMs` or more. */
  isGone(worker: string, now = performance.now()): boolean {
    const since = this.#absentSince.get(worker);
    return since !== undefined && now - since >= this.#confirmMs;
  }

  forget(worker: string): void {
    this.#absentSince.delete(worker);
  }
}

/**
 * Takes back the leases of the workers `revoke` names (the driver declared them lost): each is
 * deleted on the revision read, so a holder that renewed meanwhile keeps it. A lost
 * holder that comes back finds the revision moved and is fenced.
 *
 * @example
 * await revokeLeases(kv, (worker) => worker === 'w2');
 */
export async function revokeLeases(kv: KV, revoke: (worker: string) => boolean): Promise<number[]> {
  const revoked: number[] = [];
  for (const entry of await readEntries(kv, 'leases.*')) {
    const { key } = entry;
    const lease = decodeValue(entry.value) as Lease;
    if (!revoke(lease.worker)) continue;
    try {
      await kv.delete(key, { previousSeq: entry.revision });
      revoked.push(Number(key.slice('leases.'.length)));
    } catch (error) {
      if (!isCasFailure(error)) throw error;
    }
  }
  return revoked.sort((a, b) => a - b);
}

/**
 * The leases one worker holds: taken for the slots assigned to it, renewed every
 * third of the lease time, released when the slot moves away.
 *
 * @example
 * const leases = new SlotLeases(kv, 'w1', 3000, logger);
 * await leases.hold([0, 2], 1);
 * await leases.check(); // throws FencedError once a lease was lost
 */
export class SlotLeases {
  readonly #kv: KV;
  readonly #worker: string;
  readonly #leaseMs: number;
  readonly #logger: Logger | undefined;
  /** Revision of each held slot's lease. */
  readonly #held = new Map<number, number>();
  #epoch = 0;
  #lost: FencedError | undefined;
  /** performance.now() of the oldest renewal among the held leases. */
  #renewedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Holds, renewals and releases run one at a time: a renewal must not take back a slot just given up. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(kv: KV, worker: string, leaseMs: number, logger?: Logger) {
    this.#kv = kv;
    this.#worker = worker;
    this.#leaseMs = leaseMs;
    this.#logger = logger;
  }

  /** True once a lease was lost (this holder commits nothing more). */
  get lost(): boolean {
    return this.#lost !== undefined;
  }

  /** The slots held now. */
  get slots(): number[] {
    return [...this.#held.keys()].sort((a, b) => a - b);
  }

  /**
   * Holds exactly `slots` under `epoch`: releases the others, takes the new ones
   * (waiting, at most `waitMs`, for a previous holder's lease to expire).
   */
  hold(slots: readonly number[], epoch: number, superseded: () => boolean = () => false, waitMs = this.#leaseMs * 4): Promise<void> {
    return this.#serial(() => this.#hold(slots, epoch, waitMs, superseded));
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work, work);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #hold(slots: readonly number[], epoch: number, waitMs: number, superseded: () => boolean): Promise<void> {
    if (this.#lost) throw this.#lost;
    this.#epoch = epoch;
    const wanted = new Set(slots);
    for (const [q, revision] of [...this.#held]) {
      if (wanted.has(q)) continue;
      this.#held.delete(q);
      await this.#kv.delete(leaseKey(q), { previousSeq: revision }).catch(() => {});
    }
    const value = encodeValue({ worker: this.#worker, epoch } satisfies Lease);
    const deadline = performance.now() + waitMs;
    const started = performance.now();
    for (const q of slots) {
      for (;;) {
        try {
          const held = this.#held.get(q);
          if (held !== undefined) {
            this.#held.set(q, await renewOwn(this.#kv, leaseKey(q), value, held));
            break;
          }
          const current = await this.#kv.get(leaseKey(q));
          const holder =
            current && current.operation === 'PUT' && current.value.length > 0 ? (decodeValue(current.value) as Lease) : undefined;
          // Ours from before (a lost reply): renew it; absent: take it; another's: wait until it is given back or revoked.
          if (holder?.worker === this.#worker && current) this.#held.set(q, await this.#kv.update(leaseKey(q), value, current.revision));
          else if (holder === undefined) this.#held.set(q, await this.#kv.create(leaseKey(q), value));
          else throw new FencedError(`slot ${q}: leased to ${holder.worker}`);
          break;
        } catch (error) {
          if (this.#held.has(q) && isCasFailure(error)) throw this.#lose(q, error);
          if (performance.now() > deadline) {
            throw new InvalidStateError(`slot ${q}: not taken after ${waitMs} ms (${(error as Error).message})`);
          }
          if (superseded()) throw new InvalidStateError(`slot ${q}: a newer assignment arrived while waiting for its lease`);
          // Taken meanwhile, still another's, or the bucket unreachable for the moment (an election).
          await delayMs(Math.min(250, this.#leaseMs / 4));
        }
      }
    }
    this.#renewedAt = started;
    this.#arm();
  }

  /**
   * Throws FencedError when a lease was lost. A holder whose last renewal is older
   * than the lease (a paused process must not trust leases it can no longer prove)
   * renews first, and while the bucket cannot be reached (an election) keeps trying,
   * at most PROVE_WAIT_MS: nobody can take its leases meanwhile either.
   */
  async check(): Promise<void> {
    const started = performance.now();
    for (;;) {
      if (this.#lost) throw this.#lost;
      if (this.#held.size === 0 || performance.now() - this.#renewedAt < this.#leaseMs) return;
      await this.#serial(() => this.#renew());
      if (this.#lost) throw this.#lost;
      if (performance.now() - this.#renewedAt < this.#leaseMs) return;
      if (performance.now() - started > PROVE_WAIT_MS) {
        throw new FencedError(`worker ${this.#worker} could not renew its leases for ${PROVE_WAIT_MS} ms`);
      }
      await delayMs(Math.min(250, this.#leaseMs / 4));
    }
  }

  /** Stops renewing and gives every lease back. */
  release(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    return this.#serial(async () => {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      const held = [...this.#held];
      this.#held.clear();
      await Promise.all(held.map(([q, revision]) => this.#kv.delete(leaseKey(q), { previousSeq: revision }).catch(() => {})));
    });
  }

  /** Stops renewing without giving anything back (a crash). */
  abandon(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(
      () => {
        void this.#serial(() => this.#renew()).then(() => {
          if (!this.#lost && this.#held.size > 0) this.#arm();
        });
      },
      Math.max(50, Math.floor(this.#leaseMs / 3)),
    );
  }

  /** Renews every held lease; a revision that moved loses it, a bucket out of reach is tried again later. */
  async #renew(): Promise<void> {
    const started = performance.now();
    const value = encodeValue({ worker: this.#worker, epoch: this.#epoch } satisfies Lease);
    for (const [q, revision] of [...this.#held]) {
      try {
        this.#held.set(q, await renewOwn(this.#kv, leaseKey(q), value, revision));
      } catch (error) {
        if (isCasFailure(error)) {
          this.#lose(q, error);
          return;
        }
        this.#logger?.warn({ reason: reasonOf(error), slot: q }, 'renewing a lease failed; trying again');
        return;
      }
    }
    this.#renewedAt = started;
  }

  #lose(q: number, error: unknown): FencedError {
    const lost = new FencedError(`worker ${this.#worker} lost its lease on slot ${q}: ${(error as Error).message}`, { cause: error });
    this.#lost = lost;
    this.#logger?.warn({ slot: q, reason: lost.message }, 'lease lost: this worker commits nothing more');
    this.#held.clear();
    clearTimeout(this.#timer);
    return lost;
  }
}

/** The KV key of slot q's lease. */
export function leaseKey(q: number): string {
  return `leases.${q}`;
}

/**
 * The current holder of slot q, if any.
 *
 * @example
 * const lease = await readLease(kv, 0); // { worker: 'w1', epoch: 1 }
 */
export async function readLease(kv: KV, q: number): Promise<Lease | undefined> {
  const entry = await kv.get(leaseKey(q));
  if (entry === null || entry.operation !== 'PUT' || entry.value.length === 0) return undefined;
  return decodeValue(entry.value) as Lease;
}
