/**
 * The contract between the driver and a source: allocate a batch's input as a small,
 * encodable record, then read the records that allocation names. Keeping the two
 * apart is what lets a later journal store the allocation and replay it.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { ActorRef, ActorSystem } from '../../actors/system.ts';
import type { Clock } from '../base/clock.ts';
import type { Logger } from '../base/logger.ts';
import type { Allocation, ReceivedBlock } from './wire.ts';

/** What a source may use while it runs. */
export interface SourceEnv {
  readonly system: ActorSystem;
  /** The actor under which a source spawns its receiver. */
  readonly parent: ActorRef<never>;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly name: string;
  readonly batchDurationMs: number;
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

/** A resuming input's journaled past. */
export interface InputRecovery {
  /** The input's position as of the checkpoint (see {@link OpenInput.position}). */
  readonly position: unknown;
  /** Allocations of the batches after the checkpoint, oldest first (they will be replayed). */
  readonly allocations: readonly Allocation[];
  /** Received blocks the journal holds for this input, by id. */
  readonly blocks: ReadonlyMap<string, readonly unknown[]>;
  /** Blocks received but not yet allocated when the app stopped: they go into the next batch. */
  readonly pending: readonly ReceivedBlock[];
}

/** A running source. */
export interface OpenInput<T> {
  allocate(timeMs: number): Promise<Allocation>;
  read(allocation: Allocation): Promise<T[]>;
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
