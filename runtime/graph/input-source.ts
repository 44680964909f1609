/**
 * The contract between the driver and a source: allocate a batch's input as a small,
 * encodable record, then read the records that allocation names. Keeping the two
 * apart is what lets a later journal store the allocation and replay it.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Clock } from '../base/clock.ts';
import type { Logger } from '../base/logger.ts';
import type { RateLimit } from './rate-controller.ts';
import type { Allocation, ReceivedBlock, SetAside } from './wire.ts';

/** What a source may use while it runs. */
export interface SourceEnv {
  /** Where a custom receiver's records wait for a batch (only receiverSource uses it). */
  readonly receiverHost: ReceiverHost;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly name: string;
  readonly batchDurationMs: number;
  /** How many records per second this input may take (backpressure, maxRatePerPartition). */
  readonly rate: RateLimit;
  /** How often a receiver's records are cut into a block and written ahead. */
  readonly blockIntervalMs: number;
  readonly zeroTimeMs: number;
  /** Reports a failure the app must see (stops the context with SOURCE_FAILED). */
  fail(error: Error): void;
  /** Reports records a receiver accepted (listeners' `onRecordsReceived`). */
  received(records: number): void;
  /** Write-ahead: makes a received block durable before it is allocated (no-op without a checkpoint). */
  writeBlock(block: ReceivedBlock): Promise<void>;
  /** What the journal knows of this input when the app resumes from a checkpoint. */
  readonly recovery?: InputRecovery;
  /** The context's shared NATS connection (NATS sources). */
  nats(): Promise<NatsConnection>;
  /** Reports a record that could not be decoded and went to a dead-letter subject. */
  deadLetter(info: { readonly subject: string; readonly error: string }): void;
}

/**
 * What the engine runs for a custom receiver: the buffer its records wait in until a
 * batch cuts them into a block. Declared here so that the source contract names no
 * actor types; actors/receivers/receiver-host.ts implements it with an actor under
 * the context's root.
 *
 * @example
 * const buffer = env.receiverHost.openBuffer(env.name, { received: env.received, drained: () => {} });
 * buffer.store(['a', 'b']);
 * const block = await buffer.cut(timeMs); // { id, records: ['a', 'b'] }
 */
export interface ReceiverHost {
  /** Starts the buffer of the stream `name`; it stops with the context. */
  openBuffer(name: string, hooks: ReceiverBufferHooks): ReceiverBuffer;
}

/** What a receiver's buffer reports, in the order it handles records. */
export interface ReceiverBufferHooks {
  /** `records` arrived in the buffer. */
  received(records: number): void;
  /** A cut took `records` out of the buffer. */
  drained(records: number): void;
}

/** A receiver's buffer: records in, in order; blocks out. */
export interface ReceiverBuffer {
  /** Adds records without waiting. */
  store(records: readonly unknown[]): void;
  /** Adds a dead letter (input that is not a record) to the next block. */
  setAside(letter: SetAside): void;
  /** Cuts everything stored so far (at most `max` records) into a block named after `timeMs`, or null when nothing was stored. */
  cut(timeMs: number, max?: number): Promise<ReceivedBlock | null>;
}

/** A resuming input's journaled past. */
export interface InputRecovery {
  /** The input's position as of the checkpoint (see {@link OpenInput.position}). */
  readonly position: unknown;
  /** Allocations of the batches after the checkpoint, oldest first (they will be replayed). */
  readonly allocations: readonly Allocation[];
  /** Received blocks the journal holds for this input, by id. */
  readonly blocks: ReadonlyMap<string, ReceivedBlock>;
  /** Blocks received but not yet allocated when the app stopped: they go into the next batch. */
  readonly pending: readonly ReceivedBlock[];
}

/** A running source. */
export interface OpenInput<T> {
  allocate(timeMs: number): Promise<Allocation>;
  /**
   * The records of an allocation; input that cannot be a record (bad bytes, too
   * long, a file gone) goes to `setAside`, the batch's dead letters, deterministically
   * (a replay decides the same).
   */
  read(allocation: Allocation, setAside?: (letter: SetAside) => void): Promise<T[]>;
  /**
   * Reads only partition `partition` of `partitions` of the batch: exactly what
   * splitting `read(allocation)` into contiguous partitions would give. A source
   * that has it is read where each partition is computed (nothing is shipped).
   */
  readPartition?(allocation: Allocation, partition: number, partitions: number): Promise<T[]>;
  /**
   * Stops taking in records (a graceful stop); resolves true when records accepted
   * before it wait for a batch, so the stop runs one more.
   */
  stopReceiving?(): Promise<boolean>;
  /** Where the input stands (queue index, files seen), stored with each checkpoint. */
  position?(): unknown;
  close(): Promise<void>;
}

/** A source description, opened when the context starts. */
export interface InputSource<T> {
  readonly kind: string;
  /** Parameters that define compatibility with a checkpoint (e.g. a directory). */
  readonly params: Readonly<Record<string, number | string | boolean>>;
  open(env: SourceEnv): Promise<OpenInput<T>>;
}
