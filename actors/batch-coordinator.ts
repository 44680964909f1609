/**
 * The driver's side of the data plane: it sends task descriptions (assignments,
 * batch runs, commits, checkpoint captures) to the workers and gathers their
 * completions and the partitions of streams whose outputs run on the driver. It
 * never sees other records. One coordinator serves both hosts: in-process it talks
 * to one worker over the local transport, on a cluster to many over NATS.
 */
import { randomBytes } from 'node:crypto';
import { concatAll } from '../runtime/base/arrays.ts';
import { InvalidStateError, TributaryError } from '../runtime/base/errors.ts';
import type { DeadLetter } from '../runtime/graph/graph.ts';
import type { Allocation } from '../runtime/graph/wire.ts';
import { decodeFailure, type EncodedFailure } from './transport/failure-codec.ts';
import type { AssignmentWire, CapturedPartition, ClusterMessage, RestoreSpec, Transport } from './transport/transport.ts';

/**
 * A step of the data plane got no answer within the stall time: a message was lost
 * (a NATS server restarting drops what it holds) or a worker is stuck. The driver
 * runs again from its last checkpoint.
 */
export class StallError extends TributaryError {
  constructor(what: string, ms: number, detail = `no answer within ${ms} ms (stallMs): a message was lost or a worker is stuck`) {
    super('INVALID_STATE', `${what}: ${detail}`);
    this.name = 'StallError';
  }
}

/**
 * True for a failure whose cause is a stall of the data plane.
 *
 * @example
 * if (isStall(error)) recoverFromCheckpoint(error);
 */
export function isStall(error: unknown): boolean {
  return error instanceof StallError || (error instanceof Error && error.cause instanceof StallError);
}

/** A worker refused a step because it lost its leases (paused or cut off past them): it is failed over. */
export class WorkerFencedError extends TributaryError {
  readonly worker: string;
  constructor(worker: string, cause: Error) {
    super('FENCED', `worker ${worker} refused: ${cause.message}`, { cause });
    this.name = 'WorkerFencedError';
    this.worker = worker;
  }
}

/**
 * The worker a failure names as fenced, if it is one.
 *
 * @example
 * const w = fencedWorkerOf(error); if (w) failOver([w]);
 */
export function fencedWorkerOf(error: unknown): string | undefined {
  if (error instanceof WorkerFencedError) return error.worker;
  return error instanceof Error && error.cause instanceof WorkerFencedError ? error.cause.worker : undefined;
}

/** Default stall time of a cluster run (see ClusterConfig.stallMs). */
export const STALL_MS_DEFAULT = 10_000;

/** Longest stall time after stalls in a row (each doubles it). */
const STALL_FACTOR_MAX = 32;

/** What a batch produced for the driver. */
export interface BatchResult {
  /** Input records read, all inputs together. */
  readonly records: number;
  /** The records of each output's stream, by output id, partitions in order. */
  readonly outputs: ReadonlyMap<number, unknown[]>;
  /** Records set aside by the `dead-letter` policy, every worker's. */
  readonly deadLetters: readonly DeadLetter[];
  /** Keys each keyed stateful operator holds after the batch, all partitions, by operator name. */
  readonly stateKeys: ReadonlyMap<string, number>;
  /** Records read from each input stream, by stream name. */
  readonly inputs: ReadonlyMap<string, number>;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

interface RunningBatch {
  readonly time: number;
  readonly waiting: Set<string>;
  records: number;
  readonly deadLetters: DeadLetter[];
  readonly stateKeys: Map<string, number>;
  readonly inputs: Map<string, number>;
  readonly outputs: Map<number, Map<number, unknown[]>>;
  resolve(result: BatchResult): void;
  reject(error: Error): void;
}

/**
 * Sends tasks to `workers` over `transport` and collects what they report.
 *
 * @example
 * const c = new BatchCoordinator(hub.endpoint(DRIVER), ['local'], 60_000);
 * await c.assign(assignment, zeroTimeMs);
 * const { outputs } = await c.runBatch(1000, allocations, false);
 * await c.commit(1000);
 */
export class BatchCoordinator {
  readonly #transport: Transport;
  readonly #timeoutMs: number;
  #workers: readonly string[];
  #assignment: AssignmentWire | undefined;
  #nextRequest = 1;
  readonly #pending = new Map<number, Pending>();
  #batch: RunningBatch | undefined;
  #abandoned = false;
  #session: string;
  #restarts = 0;
  /** Workers declared lost, with why: steps that need them fail at once. */
  readonly #lost = new Map<string, Error>();
  /** Cluster runs: a step without an answer this long (times #stallFactor) is a StallError. */
  readonly #stallMs: number | undefined;
  #stallFactor = 1;

  constructor(
    transport: Transport,
    workers: readonly string[],
    timeoutMs: number,
    options: { readonly session?: string | undefined; readonly stallMs?: number | undefined } = {},
  ) {
    this.#session = options.session ?? randomBytes(6).toString('hex');
    this.#stallMs = options.stallMs;
    this.#transport = transport;
    this.#workers = workers;
    this.#timeoutMs = timeoutMs;
    transport.onMessage((from, m) => this.#handle(from, m));
  }

  /** The current assignment, once sent. */
  get assignment(): AssignmentWire | undefined {
    return this.#assignment;
  }

  /** Sends every worker the assignment (and where to restore state from); resolves when all took it. */
  async assign(assignment: AssignmentWire, zeroTimeMs: number, restore?: RestoreSpec, alsoTell: readonly string[] = []): Promise<void> {
    const previous = this.#workers;
    this.#assignment = assignment;
    this.#workers = [...new Set([...assignment.slots, ...Object.values(assignment.inputs)])].sort();
    // A lost worker assigned again came back (it rejoined with fresh leases).
    for (const w of this.#workers) this.#lost.delete(w);
    // Workers left without slots (leaving, or their slots went to a newcomer) learn they own nothing
    // now: they give their leases back at once, or the new owners would wait for them forever.
    const told = [...new Set([...this.#workers, ...alsoTell, ...previous.filter((w) => !this.#lost.has(w))])];
    await Promise.all(
      told.map((w) =>
        this.#request(w, (requestId) => ({
          type: 'assign',
          requestId,
          assignment,
          zeroTimeMs,
          session: this.#session,
          ...(restore ? { restore } : {}),
        })).catch((error: unknown) => {
          // A worker that could not take its leases in time (a holder slow to give them back, the bucket
          // out of reach) is tried again from the checkpoint, as a stall; a fenced or lost one is not.
          const e = error as TributaryError;
          if (e.code !== 'INVALID_STATE' || isStall(e) || e.name === 'WorkerLostError' || this.#abandoned) throw error;
          throw new StallError(`assign on ${w}`, this.#stallMs ?? this.#timeoutMs, (error as Error).message);
        }),
      ),
    );
  }

  /** Runs a batch on every worker; resolves with the partitions of driver-side outputs. */
  runBatch(time: number, allocations: ReadonlyMap<number, Allocation>, skipOutputs: boolean): Promise<BatchResult> {
    if (this.#batch) return Promise.reject(new InvalidStateError(`batch ${time} started while batch ${this.#batch.time} runs`));
    const lost = this.#workers.find((w) => this.#lost.has(w));
    if (lost !== undefined) return Promise.reject(this.#lost.get(lost) as Error);
    const result = new Promise<BatchResult>((resolve, reject) => {
      this.#batch = {
        time,
        waiting: new Set(this.#workers),
        records: 0,
        deadLetters: [],
        stateKeys: new Map(),
        inputs: new Map(),
        outputs: new Map(),
        resolve,
        reject,
      };
    });
    const message: ClusterMessage = { type: 'batch.run', time, allocations: [...allocations], skipOutputs };
    for (const w of this.#workers) {
      this.#transport.send(w, message).catch((error: unknown) => this.#settleBatch(error as Error));
    }
    return this.#deadline(result, `batch ${time}`).finally(() => {
      this.#batch = undefined;
    });
  }

  /** Makes every worker's state changes of batch `time` final. */
  async commit(time: number): Promise<void> {
    await Promise.all(this.#workers.map((w) => this.#request(w, (requestId) => ({ type: 'batch.commit', requestId, time }))));
  }

  /** Undoes every worker's state changes of batch `time` (its failure is being reported). */
  async abort(time: number): Promise<void> {
    this.#settleBatch(new InvalidStateError(`batch ${time} was aborted`));
    await Promise.all(this.#workers.map((w) => this.#request(w, (requestId) => ({ type: 'batch.abort', requestId, time }))));
  }

  /** Every worker captures its partitions as of `time` (writing them itself on a cluster). */
  async capture(time: number, full: readonly string[]): Promise<CapturedPartition[]> {
    const parts = await Promise.all(
      this.#workers.map((w) => this.#request(w, (requestId) => ({ type: 'state.capture', requestId, time, full }))),
    );
    return (parts as CapturedPartition[][]).flat();
  }

  /** Asks the worker reading input `nodeId` to cut its receiver's block and allocate batch `time` from `from`. */
  allocateInput(nodeId: number, time: number, from: number): Promise<Allocation> {
    const reader = this.#assignment?.inputs[String(nodeId)];
    if (reader === undefined) return Promise.reject(new InvalidStateError(`no worker reads input ${nodeId}`));
    return this.#request(reader, (requestId) => ({ type: 'input.allocate', requestId, nodeId, time, from })) as Promise<Allocation>;
  }

  /** The committed value of `key` in stateful node `nodeId`, asked of the worker that owns `partition`. */
  lookup(nodeId: number, partition: number, key: unknown): Promise<unknown> {
    const owner = this.#ownerOf(partition);
    return this.#request(owner, (requestId) => ({ type: 'state.lookup', requestId, nodeId, key }));
  }

  /** The committed state of every partition of `nodeId`, in partition order. */
  async snapshots(nodeId: number): Promise<unknown[]> {
    const parts = (await Promise.all(
      this.#workers.map((w) => this.#request(w, (requestId) => ({ type: 'state.snapshot', requestId, nodeId }))),
    )) as [number, unknown][][];
    return parts
      .flat()
      .sort((a, b) => a[0] - b[0])
      .map(([, s]) => s);
  }

  /**
   * Starts a new driver run on `assignment` (after a worker was lost): everything
   * pending fails with `reason`, the workers get a new session and rebuild their
   * partitions from `restore`.
   */
  async restart(
    assignment: AssignmentWire,
    zeroTimeMs: number,
    restore: RestoreSpec | undefined,
    reason: Error,
    alsoTell: readonly string[] = [],
  ): Promise<void> {
    this.interrupt(reason);
    // Sends to a lost worker may wait for credit that never comes.
    this.#transport.reset(reason);
    // The same driver run, a new session: workers rebuild their partitions but keep serving this driver.
    this.#session = `${this.#session.split('.')[0]}.${++this.#restarts}`;
    await this.assign(assignment, zeroTimeMs, restore, alsoTell);
  }

  /**
   * Workers `lost` stopped heart-beating: everything pending fails with `reason`, and
   * so does every later step that needs them (a handover's capture, say) until an
   * assignment without them is taken.
   */
  markLost(lost: readonly string[], reason: Error): void {
    for (const w of lost) this.#lost.set(w, reason);
    this.interrupt(reason);
  }

  /** Fails the running batch and every pending request with `reason` (a worker was lost). */
  interrupt(reason: Error): void {
    this.#settleBatch(reason);
    for (const p of this.#pending.values()) p.reject(reason);
    this.#pending.clear();
  }

  /** A stall was recovered from: the next steps get twice as long (a slow batch is not a lost one forever). */
  stalled(): void {
    this.#stallFactor = Math.min(STALL_FACTOR_MAX, this.#stallFactor * 2);
  }

  /** A batch completed: the stall time is back to its base. */
  settled(): void {
    this.#stallFactor = 1;
  }

  /** Gives up at once: nothing pending resolves, nothing more is sent. */
  abandon(): void {
    this.#abandoned = true;
    this.interrupt(new InvalidStateError('the driver was abandoned'));
  }

  #ownerOf(partition: number): string {
    const a = this.#assignment;
    if (a === undefined) throw new InvalidStateError('no assignment yet');
    return a.slots[partition % a.slots.length] as string;
  }

  #request(to: string, build: (requestId: number) => ClusterMessage): Promise<unknown> {
    if (this.#abandoned) return Promise.reject(new InvalidStateError('the driver was abandoned'));
    const lost = this.#lost.get(to);
    if (lost !== undefined) return Promise.reject(lost);
    const requestId = this.#nextRequest++;
    const message = build(requestId);
    const reply = new Promise<unknown>((resolve, reject) => this.#pending.set(requestId, { resolve, reject }));
    this.#transport.send(to, message).catch((error: unknown) => {
      this.#pending.get(requestId)?.reject(error as Error);
      this.#pending.delete(requestId);
    });
    return this.#deadline(reply, `${message.type} on ${to}`).finally(() => this.#pending.delete(requestId));
  }

  #deadline<T>(promise: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const stallMs = this.#stallMs === undefined ? undefined : this.#stallMs * this.#stallFactor;
    const timeout = new Promise<never>((_, reject) => {
      timer =
        stallMs !== undefined && stallMs < this.#timeoutMs
          ? setTimeout(() => reject(new StallError(what, stallMs)), stallMs)
          : setTimeout(
              () => reject(new InvalidStateError(`${what}: no answer within ${this.#timeoutMs} ms (taskTimeoutMs)`)),
              this.#timeoutMs,
            );
      timer.unref();
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  #settleBatch(error: Error | undefined, result?: BatchResult): void {
    const b = this.#batch;
    if (b === undefined) return;
    this.#batch = undefined;
    if (error) b.reject(error);
    else b.resolve(result as BatchResult);
  }

  #handle(from: string, m: ClusterMessage): void {
    if (this.#abandoned) return;
    switch (m.type) {
      case 'piece': {
        const b = this.#batch;
        const [time, kind, op, q] = m.key.split('|');
        if (b === undefined || kind !== 'out' || Number(time) !== b.time) return;
        let parts = b.outputs.get(Number(op));
        if (parts === undefined) {
          parts = new Map();
          b.outputs.set(Number(op), parts);
        }
        parts.set(Number(q), m.records as unknown[]);
        return;
      }
      case 'batch.done': {
        const b = this.#batch;
        if (b === undefined || b.time !== m.time) return;
        b.records += m.records;
        if (m.deadLetters) b.deadLetters.push(...m.deadLetters);
        for (const [operator, keys] of m.stateKeys ?? []) b.stateKeys.set(operator, (b.stateKeys.get(operator) ?? 0) + keys);
        for (const [stream, n] of m.inputs ?? []) b.inputs.set(stream, (b.inputs.get(stream) ?? 0) + n);
        b.waiting.delete(from);
        if (b.waiting.size > 0) return;
        const outputs = new Map<number, unknown[]>();
        for (const [op, parts] of b.outputs) outputs.set(op, concatAll([...parts].sort((x, y) => x[0] - y[0]).map(([, r]) => r)));
        this.#settleBatch(undefined, { records: b.records, outputs, deadLetters: b.deadLetters, stateKeys: b.stateKeys, inputs: b.inputs });
        return;
      }
      case 'batch.failed': {
        if (this.#batch?.time !== m.time) return;
        this.#settleBatch(decodeFailure(m.failure as EncodedFailure | Error));
        return;
      }
      case 'reply': {
        const p = this.#pending.get(m.requestId);
        if (p === undefined) return;
        this.#pending.delete(m.requestId);
        if (m.ok) {
          p.resolve(m.value);
          return;
        }
        const failure = decodeFailure(m.failure as EncodedFailure | Error);
        p.reject((failure as { code?: string }).code === 'FENCED' ? new WorkerFencedError(from, failure) : failure);
        return;
      }
      default:
        return;
    }
  }
}
