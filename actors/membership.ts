/**
 * Who is in the cluster, and who owns which partition slot, held by NATS itself:
 * one KV bucket per app (`TRIBUTARY_<app>_CLUSTER`) whose entries expire after the
 * lease time unless renewed. `workers.<id>` is a worker's registration (its graph
 * fingerprint included), `driver` the driver's, `leases.<q>` the lease of slot q:
 * `{ worker, epoch }`, taken with create (compare-and-set on "absent") and renewed
 * with update on the revision the holder last wrote. A worker that was paused or cut
 * off past the lease time finds its key expired or taken: its next renewal fails
 * and it may commit nothing (FencedError).
 */
import { JetStreamApiError, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { decodeValue, encodeValue } from '../runtime/base/cbor.ts';
import { delayMs } from '../runtime/base/clock.ts';
import { FencedError, InvalidStateError } from '../runtime/base/errors.ts';
import type { Logger } from '../runtime/base/logger.ts';
import type { FingerprintEntry } from '../runtime/graph/wire.ts';

/** Default lease time: a silent worker loses its slots after this long. */
export const LEASE_MS_DEFAULT = 3000;

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
  const options = { replicas, history: 1, ttl: leaseMs, allow_direct: false, storage: StorageType.Memory };
  try {
    const info = await (await jetstreamManager(nc, { checkAPI: false })).streams.info(`KV_${name}`);
    const existing = Math.round(info.config.max_age / 1e6);
    if (existing !== leaseMs)
      throw new InvalidStateError(`the cluster bucket ${name} has a lease time of ${existing} ms, not ${leaseMs} ms`);
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
      kv.put(key, bytes).catch((error: unknown) => logger?.warn({ err: error, key }, 'renewing a registration failed; retrying'));
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

/**
 * The workers registered now.
 *
 * @example
 * const live = await listWorkers(kv); // [{ id: 'w-1a2b', graph: [...], ... }]
 */
export async function listWorkers(kv: KV): Promise<WorkerInfo[]> {
  const out: WorkerInfo[] = [];
  const keys = await kv.keys('workers.*');
  for await (const key of keys) {
    const entry = await kv.get(key);
    if (entry === null || entry.operation !== 'PUT' || entry.value.length === 0) continue;
    out.push(decodeValue(entry.value) as WorkerInfo);
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
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
  hold(slots: readonly number[], epoch: number, waitMs = this.#leaseMs * 4): Promise<void> {
    return this.#serial(() => this.#hold(slots, epoch, waitMs));
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work, work);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #hold(slots: readonly number[], epoch: number, waitMs: number): Promise<void> {
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
      const held = this.#held.get(q);
      if (held !== undefined) {
        this.#held.set(q, await this.#kv.update(leaseKey(q), value, held));
        continue;
      }
      for (;;) {
        try {
          this.#held.set(q, await this.#kv.create(leaseKey(q), value));
          break;
        } catch (error) {
          const current = await this.#kv.get(leaseKey(q)).catch(() => null);
          const holder =
            current && current.operation === 'PUT' && current.value.length > 0 ? (decodeValue(current.value) as Lease) : undefined;
          if (holder?.worker === this.#worker && current) {
            this.#held.set(q, await this.#kv.update(leaseKey(q), value, current.revision));
            break;
          }
          if (performance.now() > deadline) {
            throw new FencedError(
              `slot ${q}: still leased to ${holder?.worker ?? 'another worker'} after ${waitMs} ms (its lease must expire first)`,
              { cause: error },
            );
          }
          await delayMs(Math.min(250, this.#leaseMs / 4));
        }
      }
    }
    this.#renewedAt = started;
    this.#arm();
  }

  /**
   * Throws FencedError when a lease was lost, or when the last renewal is older than
   * the lease time (a paused process must not trust leases it can no longer prove).
   */
  async check(): Promise<void> {
    if (this.#lost) throw this.#lost;
    if (this.#held.size === 0) return;
    if (performance.now() - this.#renewedAt >= this.#leaseMs) {
      await this.#serial(() => this.#renew());
      if (this.#lost) throw this.#lost;
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

  async #renew(): Promise<void> {
    const started = performance.now();
    const value = encodeValue({ worker: this.#worker, epoch: this.#epoch } satisfies Lease);
    // A renewal that began after the lease already ran out proves nothing: someone may have taken it.
    const stale = started - this.#renewedAt >= this.#leaseMs;
    for (const [q, revision] of [...this.#held]) {
      try {
        if (stale) throw new Error(`not renewed for ${Math.round(started - this.#renewedAt)} ms`);
        this.#held.set(q, await this.#kv.update(leaseKey(q), value, revision));
      } catch (error) {
        this.#lost = new FencedError(`worker ${this.#worker} lost its lease on slot ${q}: ${(error as Error).message}`, { cause: error });
        this.#logger?.error({ err: this.#lost, slot: q }, 'lease lost: this worker commits nothing more');
        this.#held.clear();
        clearTimeout(this.#timer);
        return;
      }
    }
    this.#renewedAt = started;
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
