/**
 * The contract between the driver and a source: allocate a batch's input as a small,
 * encodable record, then read the records that allocation names. Keeping the two
 * apart is what lets a later journal store the allocation and replay it.
 */
import type { ActorRef, ActorSystem } from '../actors/system.ts';
import type { Clock } from './clock.ts';
import type { Logger } from './logger.ts';

/**
 * What a batch's input was: enough to rebuild the batch exactly.
 * Queue indexes, generator sequence ranges, file names, or received blocks.
 */
export type Allocation =
  | { readonly type: 'queue'; readonly from: number; readonly to: number }
  | { readonly type: 'sequence'; readonly from: number; readonly to: number }
  | { readonly type: 'files'; readonly names: readonly string[] }
  | { readonly type: 'blocks'; readonly blocks: readonly ReceivedBlock[] };

/** Records a receiver accepted, cut into a block when a batch is allocated. */
export interface ReceivedBlock {
  readonly id: string;
  readonly records: readonly unknown[];
}

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
}

/** A running source. */
export interface OpenInput<T> {
  allocate(timeMs: number): Promise<Allocation>;
  read(allocation: Allocation): Promise<T[]>;
  close(): Promise<void>;
}

/** A source description, opened when the context starts. */
export interface InputSource<T> {
  readonly kind: string;
  /** Parameters that define compatibility with a checkpoint (e.g. a directory). */
  readonly params: Readonly<Record<string, number | string | boolean>>;
  open(env: SourceEnv): Promise<OpenInput<T>>;
}
