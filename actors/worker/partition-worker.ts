/**
 * A worker's half of every batch: it holds the state partitions of the slots it
 * owns and runs its batch-partitions in plan order, sending each piece of data to
 * the worker that needs it (input partitions from their reader, shuffle buckets
 * from map side to reduce side, whole-batch inputs to slot 0's owner, outputs to
 * the driver). The driver sends only task descriptions. The same code runs in the
 * driver's process (local transport) and in `tributary worker` processes (NATS).
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { concatAll, splitIntoPartitions } from '../../runtime/base/arrays.ts';
import { assertNever } from '../../runtime/base/assert.ts';
import { InvalidStateError, OperatorFailure } from '../../runtime/base/errors.ts';
import { type Logger, reasonOf } from '../../runtime/base/logger.ts';
import type { DeadLetter, GraphNode, PartitionState } from '../../runtime/graph/graph.ts';
import type { OpenInput } from '../../runtime/graph/input-source.ts';
import { partitionOf } from '../../runtime/graph/partitioner.ts';
import { isActive, type Plan } from '../../runtime/graph/plan.ts';
import type { Allocation, SnapshotData } from '../../runtime/graph/wire.ts';
import { ownerOf } from '../assignment.ts';
import { encodeFailure } from '../transport/failure-codec.ts';
import type { AssignmentWire, CapturedPartition, ClusterMessage, RestoreSpec, Transport } from '../transport/transport.ts';
import { DRIVER } from '../transport/transport.ts';
import { Inbox } from './inbox.ts';
import { collectPartition, describeError, mapPartition, mapPartitionsTogether, reducePartition, wholeBatch } from './stage-work.ts';

/** Builds (or restores) one state partition this worker takes over. */
export type StateLoader = (
  node: GraphNode,
  operator: string,
  partition: number,
  restore: RestoreSpec | undefined,
) => Promise<PartitionState>;

/** Where a worker writes the snapshots of its partitions itself (a cluster); absent in-process. */
export interface SnapshotWriter {
  write(key: { readonly operator: string; readonly partition: number; readonly time: number }, data: SnapshotData): Promise<number>;
}

/** What a worker needs. */
export interface PartitionWorkerConfig {
  readonly plan: Plan;
  readonly transport: Transport;
  /** Stable keys of nodes (snapshot names). */
  readonly keys: ReadonlyMap<number, string>;
  /** Inputs this process can read, by node id. */
  readonly inputs: ReadonlyMap<number, OpenInput<unknown>>;
  readonly loadState: StateLoader;
  readonly snapshots?: SnapshotWriter | undefined;
  /** Throws (FencedError) when this worker no longer holds its leases: nothing may be committed then. */
  readonly checkOwnership?: (() => Promise<void>) | undefined;
  /** Cuts a receiver's block into its log and returns the batch's allocation (the worker running that receiver). */
  readonly allocate?: ((nodeId: number, time: number, from: number) => Promise<Allocation>) | undefined;
  /** Runs before an assignment is taken (a cluster worker opens its inputs and takes its leases here). */
  readonly onAssign?:
    | ((assignment: AssignmentWire, zeroTimeMs: number, owned: readonly number[], superseded: () => boolean) => Promise<void>)
    | undefined;
  readonly logger?: Logger | undefined;
}

type Assign = Extract<ClusterMessage, { type: 'assign' }>;

/**
 * Runs the batch-partitions of one worker.
 *
 * @example
 * const worker = new PartitionWorker({ plan, transport: hub.endpoint('local'), keys, inputs, loadState });
 */
export class PartitionWorker {
  readonly #cfg: PartitionWorkerConfig;
  readonly #inbox = new Inbox();
  #assignment: AssignmentWire | undefined;
  #zeroTimeMs = 0;
  /** State partitions this worker owns, by node id then partition. */
  readonly #states = new Map<number, Map<number, PartitionState>>();
  #stepped: PartitionState[] = [];
  #running: Promise<void> = Promise.resolve();
  #control: Promise<void> = Promise.resolve();
  #abandoned = false;
  /** Counts ended driver runs: a batch of an ended run stops at its next step. */
  #runs = 0;
  /** Counts assignments received. */
  #assigns = 0;
  #session: string | undefined;
  /** The session of an assignment being taken (its leases are this session's already). */
  #assigning: string | undefined;

  constructor(cfg: PartitionWorkerConfig) {
    this.#cfg = cfg;
    cfg.transport.onMessage((from, message) => this.#handle(from, message));
  }

  /** The driver run this worker serves (or is taking an assignment from). */
  get session(): string | undefined {
    return this.#assigning ?? this.#session;
  }

  /** The name of this worker on the transport. */
  get id(): string {
    return this.#cfg.transport.self;
  }

  /** Stops at once, as a killed process would: no further step, nothing committed. */
  abandon(): void {
    this.#abandoned = true;
    this.#inbox.abort(new InvalidStateError('the worker was abandoned'));
  }

  #handle(from: string, m: ClusterMessage): void {
    if (this.#abandoned) return;
    switch (m.type) {
      case 'piece':
        // A piece a peer sent for an earlier driver run is stale.
        if (m.session === undefined || m.session === this.#session) this.#inbox.put(m.key, m.records);
        return;
      case 'assign':
        // A new driver run: what the ended one still waits for (pieces, credit of a dead peer) fails now,
        // or a control step queued behind it would keep this assignment waiting forever.
        if (m.session !== this.#session) this.#endRun();
        {
          // An assignment still taking its leases when a newer one arrives gives up (the newer waits behind it).
          const seq = ++this.#assigns;
          this.#reply(from, m.requestId, () => this.#assign(m, () => this.#assigns !== seq));
        }
        return;
      case 'batch.run':
        this.#running = this.#run(m.time, new Map(m.allocations), m.skipOutputs);
        return;
      case 'batch.commit':
        this.#reply(from, m.requestId, async () => {
          await this.#running;
          await this.#cfg.checkOwnership?.();
          // One partition's commit per turn of the event loop (the next batch waits for this reply).
          for (const [i, s] of this.#stepped.entries()) {
            if (i > 0) await nextTurn();
            s.commit();
          }
          this.#stepped = [];
          this.#inbox.clear(m.time);
        });
        return;
      case 'batch.abort':
        this.#reply(from, m.requestId, async () => {
          this.#inbox.abort(new InvalidStateError(`batch ${m.time} was aborted`), m.time);
          await this.#running;
          for (const s of this.#stepped) s.rollback();
          this.#stepped = [];
          this.#inbox.clear(m.time);
        });
        return;
      case 'state.capture':
        this.#reply(from, m.requestId, () => this.#capture(m.time, new Set(m.full)));
        return;
      case 'input.allocate': {
        // Beside the control chain: the next batch's input is cut while the current one runs.
        const allocate = this.#cfg.allocate;
        const requestId = m.requestId;
        Promise.resolve()
          .then(() => {
            if (allocate === undefined) throw new InvalidStateError(`worker ${this.id} runs no receiver`);
            return allocate(m.nodeId, m.time, m.from);
          })
          .then(
            (value) => this.#send(from, { type: 'reply', requestId, ok: true, value }),
            (error: unknown) => this.#send(from, { type: 'reply', requestId, ok: false, failure: this.#failure(error) }),
          );
        return;
      }
      case 'state.lookup':
        this.#reply(from, m.requestId, async () => {
          const node = this.#cfg.plan.byId.get(m.nodeId) as GraphNode;
          const q = partitionOf(m.key, node.partitions);
          const s = this.#states.get(m.nodeId)?.get(q);
          return s?.lookup ? s.lookup(m.key) : undefined;
        });
        return;
      case 'state.snapshot':
        this.#reply(from, m.requestId, async () => {
          const out: [number, unknown][] = [];
          for (const [q, s] of this.#states.get(m.nodeId) ?? []) out.push([q, s.toSnapshot()]);
          return out;
        });
        return;
      case 'batch.done':
      case 'batch.failed':
      case 'reply':
        this.#cfg.logger?.warn({ type: m.type, from }, 'a worker received a message meant for the driver');
        return;
      default:
        assertNever(m);
    }
  }

  /**
   * Control messages run one after another, in the order the driver sent them (a
   * rollback is done before a later read of the state); batches run beside them.
   */
  #reply(to: string, requestId: number, work: () => unknown): void {
    const done = this.#control.then(work);
    this.#control = done.then(
      () => undefined,
      () => undefined,
    );
    done.then(
      (value) => this.#send(to, { type: 'reply', requestId, ok: true, value }),
      (error: unknown) => this.#send(to, { type: 'reply', requestId, ok: false, failure: this.#failure(error) }),
    );
  }

  #failure(error: unknown) {
    return this.#cfg.transport.local ? (error as Error) : encodeFailure(error);
  }

  #send(to: string, message: ClusterMessage): Promise<void> {
    if (to === this.id && message.type === 'piece') {
      this.#inbox.put(message.key, message.records);
      return Promise.resolve();
    }
    return this.#cfg.transport.send(to, message).catch((error: unknown) => {
      this.#cfg.logger?.warn({ reason: reasonOf(error), to, type: message.type }, 'sending failed');
      // A piece that did not leave fails its batch (the driver runs it again or moves on), not the worker.
      if (message.type === 'piece') this.#inbox.abort(error as Error, Number(message.key.slice(0, message.key.indexOf('|'))));
    });
  }

  async #assign(m: Assign, superseded: () => boolean): Promise<void> {
    if (superseded()) throw new InvalidStateError('a newer assignment arrived');
    const owned = m.assignment.slots.flatMap((w, q) => (w === this.id ? [q] : []));
    this.#assigning = m.session;
    try {
      await this.#cfg.onAssign?.(m.assignment, m.zeroTimeMs, owned, superseded);
    } finally {
      this.#assigning = undefined;
    }
    this.#assignment = m.assignment;
    this.#zeroTimeMs = m.zeroTimeMs;
    if (m.session !== this.#session) {
      // A new driver run restores from its checkpoint and replays: state left from an earlier run must go.
      this.#session = m.session;
      this.#endRun();
      await this.#running.catch(() => {});
      this.#states.clear();
      this.#stepped = [];
    }
    for (const node of this.#cfg.plan.stateful) {
      if (node.kind !== 'stateful') continue;
      const operator = this.#key(node.id);
      const mine = this.#states.get(node.id) ?? new Map<number, PartitionState>();
      for (const q of [...mine.keys()]) if (!this.#owns(q)) mine.delete(q);
      const loads: Promise<void>[] = [];
      for (let q = 0; q < node.partitions; q++) {
        if (!this.#owns(q) || mine.has(q)) continue;
        loads.push(this.#cfg.loadState(node, operator, q, m.restore).then((s) => void mine.set(q, s)));
      }
      await Promise.all(loads);
      this.#states.set(node.id, mine);
    }
  }

  /** Fails everything the current driver run waits for: pieces, and sends waiting for credit. */
  #endRun(): void {
    this.#runs++;
    const reason = new InvalidStateError('a new driver run began');
    this.#cfg.transport.reset(reason);
    this.#inbox.reset(reason);
  }

  #owns(q: number): boolean {
    return ownerOf(this.#assignment as AssignmentWire, q) === this.id;
  }

  #key(nodeId: number): string {
    return this.#cfg.keys.get(nodeId) ?? String(nodeId);
  }

  /** Captures (and, on a cluster, writes) the snapshot of every partition this worker owns. */
  async #capture(time: number, full: ReadonlySet<string>): Promise<CapturedPartition[]> {
    const out: CapturedPartition[] = [];
    const writer = this.#cfg.snapshots;
    // A worker that lost its leases hands nothing to a checkpoint, written by itself or by the driver.
    await this.#cfg.checkOwnership?.();
    for (const node of this.#cfg.plan.stateful) {
      const operator = this.#key(node.id);
      for (const [partition, s] of [...(this.#states.get(node.id) ?? [])].sort((a, b) => a[0] - b[0])) {
        // One partition's copy per turn of the event loop (the next batch starts only after the capture).
        if (out.length > 0) await nextTurn();
        const data = s.capture(full.has(`${operator}/${partition}`));
        if (writer === undefined) {
          out.push({ operator, partition, data });
          continue;
        }
        const bytes = await writer.write({ operator, partition, time }, data);
        out.push({ operator, partition, stored: { kind: data.kind, bytes, entries: data.keys.length } });
      }
    }
    return out;
  }

  async #run(time: number, allocations: ReadonlyMap<number, Allocation>, skipOutputs: boolean): Promise<void> {
    await this.#running.catch(() => {});
    const session = this.#session;
    let current = 'input';
    try {
      const deadLetters: DeadLetter[] = [];
      const stateKeys = new Map<string, number>();
      const inputs = new Map<string, number>();
      const records = await this.#batch(
        time,
        allocations,
        skipOutputs,
        (name) => {
          current = name;
        },
        deadLetters,
        stateKeys,
        inputs,
      );
      if (session === this.#session)
        await this.#send(DRIVER, {
          type: 'batch.done',
          time,
          records,
          ...(deadLetters.length > 0 ? { deadLetters } : {}),
          ...(stateKeys.size > 0 ? { stateKeys: [...stateKeys] } : {}),
          ...(inputs.size > 0 ? { inputs: [...inputs] } : {}),
        });
    } catch (error) {
      const failure = error instanceof OperatorFailure ? error : OperatorFailure.of(current, error);
      // A batch of an earlier driver run reports nothing: the new driver may be running that same time.
      if (!this.#abandoned && session === this.#session) {
        await this.#send(DRIVER, { type: 'batch.failed', time, failure: this.#failure(failure) });
      }
    }
  }

  #assertLive(time: number): void {
    if (this.#abandoned) throw new InvalidStateError('the worker was abandoned');
    if (this.#inbox.isAborted(time)) throw new InvalidStateError(`batch ${time} was aborted`);
  }

  /** Runs this worker's part of one batch; returns the input records it read. */
  async #batch(
    time: number,
    allocations: ReadonlyMap<number, Allocation>,
    skipOutputs: boolean,
    at: (operator: string) => void,
    deadLetters: DeadLetter[],
    stateKeys: Map<string, number>,
    inputs: Map<string, number>,
  ): Promise<number> {
    const { plan } = this.#cfg;
    const a = this.#assignment;
    if (a === undefined) throw new InvalidStateError(`worker ${this.id} got batch ${time} before an assignment`);
    const local = new Map<number, Map<number, unknown[]>>();
    const extras = new Map<number, Map<number, unknown[]>>();
    const present = new Set<number>();
    /** Stateful nodes that produced their companion stream (stateSnapshots) this batch. */
    const extraPresent = new Set<number>();
    const mine = (n: number): number[] => {
      const qs: number[] = [];
      for (let q = 0; q < n; q++) if (this.#owns(q)) qs.push(q);
      return qs;
    };
    const put = (m: Map<number, Map<number, unknown[]>>, id: number, q: number, records: unknown[]) => {
      let parts = m.get(id);
      if (parts === undefined) {
        parts = new Map();
        m.set(id, parts);
      }
      parts.set(q, records);
    };
    const get = (id: number, q: number): unknown[] => local.get(id)?.get(q) ?? [];
    let records = 0;
    const sends: Promise<void>[] = [];
    const session = this.#session;
    const run = this.#runs;
    const take = (key: string): Promise<unknown> =>
      this.#runs === run ? this.#inbox.take(key, time) : Promise.reject(new InvalidStateError('a new driver run began'));
    /** Sends to other processes not yet handed to the socket. */
    let outgoing: Promise<void>[] = [];
    const send = (to: string, key: string, data: readonly unknown[]) => {
      const sent = this.#send(to, { type: 'piece', key, records: data, ...(session ? { session } : {}) });
      sends.push(sent);
      if (to !== this.id && !this.#cfg.transport.local) outgoing.push(sent);
    };
    /**
     * Lets pieces already sent leave the process before a CPU-bound step: NATS writes
     * on a later microtask, and a peer waiting for them would otherwise idle until
     * this worker's step ends (measured: 2 workers no faster than 1).
     */
    const flush = async () => {
      if (outgoing.length === 0) return;
      const pending = outgoing;
      outgoing = [];
      await Promise.all(pending);
      await new Promise<void>((resolve) => setImmediate(resolve));
    };

    for (const node of plan.inputs) {
      present.add(node.id);
      const input = this.#cfg.inputs.get(node.id);
      if (input?.readPartition) {
        // A source that reads by partition is read where each partition is computed.
        at(node.name);
        const allocation = allocations.get(node.id) as Allocation;
        for (const q of mine(node.partitions)) {
          const part = await input.readPartition(allocation, q, node.partitions);
          records += part.length;
          inputs.set(node.name, (inputs.get(node.name) ?? 0) + part.length);
          this.#inbox.put(`${time}|in|${node.id}|${q}`, part);
        }
        continue;
      }
      if (a.inputs[String(node.id)] !== this.id) continue;
      at(node.name);
      if (input === undefined) throw new InvalidStateError(`worker ${this.id} cannot read input ${node.name}`);
      const data = await input.read(allocations.get(node.id) as Allocation, (l) =>
        deadLetters.push({ operator: node.name, time, record: l.record, error: l.error }),
      );
      records += data.length;
      inputs.set(node.name, (inputs.get(node.name) ?? 0) + data.length);
      splitIntoPartitions(data, node.partitions).forEach((part, q) => {
        send(ownerOf(a, q), `${time}|in|${node.id}|${q}`, part);
      });
    }
    // A replayed batch whose outputs ran computes only what the states need.
    for (const node of skipOutputs ? plan.stateOrder : plan.order) {
      await flush();
      this.#assertLive(time);
      at(node.name);
      const active = isActive(node.slideMs, time, this.#zeroTimeMs);
      switch (node.kind) {
        case 'input':
          for (const q of mine(node.partitions)) put(local, node.id, q, (await take(`${time}|in|${node.id}|${q}`)) as unknown[]);
          break;
        case 'narrow': {
          const source = plan.chainOf(node).source;
          if (!active || !present.has(source.id)) break;
          for (const q of mine(node.partitions)) put(local, node.id, q, collectPartition(plan, node, get(source.id, q), time, deadLetters));
          present.add(node.id);
          break;
        }
        case 'shuffle': {
          if (!active) break;
          const sources = node.parents.map((parent) => plan.feedOf(parent).source);
          /** Parents whose partitions went through one combiner (each key once in what it sent). */
          const oneCombiner = sources.map(() => false);
          sources.forEach((source, i) => {
            if (!present.has(source.id)) return;
            const ps = mine(source.partitions);
            // In one process (ownership never moves, so neither does the order of a combiner's
            // merges) a worker that owns every partition combines them all in one map side.
            const together =
              this.#cfg.transport.local &&
              ps.length === source.partitions &&
              ps.length > 1 &&
              mine(node.partitions).length === node.partitions
                ? mapPartitionsTogether(
                    plan,
                    node,
                    i,
                    ps.map((p) => get(source.id, p)),
                    time,
                  )
                : undefined;
            if (together) {
              oneCombiner[i] = true;
              for (let q = 0; q < node.partitions; q++) {
                for (const [j, p] of ps.entries())
                  send(this.id, `${time}|sh|${node.id}|${i}|${p}|${q}`, j === 0 ? (together[q] ?? []) : []);
              }
              return;
            }
            for (const p of ps) {
              const buckets = mapPartition(plan, node, i, p, get(source.id, p), time, deadLetters);
              for (let q = 0; q < node.partitions; q++) send(ownerOf(a, q), `${time}|sh|${node.id}|${i}|${p}|${q}`, buckets[q] ?? []);
            }
          });
          await flush();
          for (const q of mine(node.partitions)) {
            const itemsPerParent: unknown[][] = [];
            for (const [i, source] of sources.entries()) {
              if (!present.has(source.id)) {
                itemsPerParent.push([]);
                continue;
              }
              const chunks: unknown[][] = [];
              for (let p = 0; p < source.partitions; p++) chunks.push((await take(`${time}|sh|${node.id}|${i}|${p}|${q}`)) as unknown[]);
              itemsPerParent.push(concatAll(chunks));
            }
            put(local, node.id, q, reducePartition(node, itemsPerParent, time, oneCombiner));
          }
          present.add(node.id);
          break;
        }
        case 'stateful': {
          const parent = node.parents[0] as GraphNode;
          if (!present.has(parent.id)) break;
          const wantExtra = node.snapshotsWanted;
          const needed = !skipOutputs || plan.feedsState(node);
          for (const [i, q] of mine(node.partitions).entries()) {
            // One partition's step per turn: a large state's batch does not hold the loop for all of them.
            if (i > 0) await nextTurn();
            const s = this.#states.get(node.id)?.get(q);
            if (s === undefined) throw new InvalidStateError(`worker ${this.id} has no state for ${node.name} partition ${q}`);
            this.#stepped.push(s);
            const emit = active && (needed || s.emitOnlyBuildsOutput !== true);
            const setAside =
              plan.recordErrors(node.name) === 'dead-letter'
                ? (record: unknown, error: unknown) =>
                    void deadLetters.push({ operator: node.name, time, record, error: describeError(error) })
                : undefined;
            // A state that every batch visits whole steps a slice per turn.
            const r = s.stepInTurns
              ? await s.stepInTurns(get(parent.id, q), time, emit, wantExtra, setAside)
              : s.step(get(parent.id, q), time, emit, wantExtra, setAside);
            if (active) put(local, node.id, q, r.output ?? []);
            if (wantExtra) put(extras, node.id, q, r.extra ?? []);
            if (s.keyCount) stateKeys.set(node.name, (stateKeys.get(node.name) ?? 0) + s.keyCount());
          }
          if (active) present.add(node.id);
          if (wantExtra) extraPresent.add(node.id);
          break;
        }
        case 'whole': {
          if (!active) break;
          const gatherer = ownerOf(a, 0);
          node.parents.forEach((parent, i) => {
            if (!present.has(parent.id)) return;
            for (const q of mine(parent.partitions)) send(gatherer, `${time}|wh|${node.id}|${i}|${q}`, get(parent.id, q));
          });
          if (gatherer === this.id) {
            const batches: unknown[][] = [];
            for (const [i, parent] of node.parents.entries()) {
              const parts: unknown[][] = [];
              if (present.has(parent.id)) {
                for (let q = 0; q < parent.partitions; q++) parts.push((await take(`${time}|wh|${node.id}|${i}|${q}`)) as unknown[]);
              }
              batches.push(concatAll(parts));
            }
            const out = wholeBatch(node, batches, time);
            splitIntoPartitions(out, node.partitions).forEach((part, q) => {
              send(ownerOf(a, q), `${time}|wo|${node.id}|${q}`, part);
            });
          }
          for (const q of mine(node.partitions)) put(local, node.id, q, (await take(`${time}|wo|${node.id}|${q}`)) as unknown[]);
          present.add(node.id);
          break;
        }
        case 'state-view': {
          const parent = node.parents[0] as GraphNode;
          if (!active || !extraPresent.has(parent.id)) break;
          for (const q of mine(node.partitions)) put(local, node.id, q, extras.get(parent.id)?.get(q) ?? []);
          present.add(node.id);
          break;
        }
        default:
          assertNever(node);
      }
    }
    this.#assertLive(time);
    if (!skipOutputs) {
      for (const op of plan.outputs) {
        if (!present.has(op.stream.id)) continue;
        for (const q of mine(op.stream.partitions)) send(DRIVER, `${time}|out|${op.id}|${q}`, get(op.stream.id, q));
      }
    }
    await Promise.all(sends);
    return records;
  }
}
