/**
 * The data plane's one interface: endpoints (the driver and each worker) exchange
 * plain-data messages. The driver sends task descriptions and receives completions;
 * workers send batch-partitions to each other. In-process runs use the local
 * transport (messages passed by reference), clusters the NATS transport (CBOR over
 * subjects `tributary.<app>.data.<endpoint>`, chunked, with credits). The scheduler
 * and the worker never know which one they have.
 */
import type { DeadLetter } from '../../runtime/graph/graph.ts';
import type { Allocation, SnapshotData } from '../../runtime/graph/wire.ts';
import type { EncodedFailure } from './failure-codec.ts';

/** The driver's endpoint name; workers are named by their worker id. */
export const DRIVER = 'driver';

/** Who owns what, as the driver decided (see actors/assignment.ts). */
export interface AssignmentWire {
  /** Increases with every change; leases and completions carry it. */
  readonly epoch: number;
  /** The worker that owns partition slot q (partition q of every node). */
  readonly slots: readonly string[];
  /** The worker that reads each input node, by node id. */
  readonly inputs: Readonly<Record<string, string>>;
}

/** A snapshot a worker wrote itself, or the captured data for the driver to write. */
export type CapturedPartition =
  | { readonly operator: string; readonly partition: number; readonly data: SnapshotData }
  | {
      readonly operator: string;
      readonly partition: number;
      readonly stored: { readonly kind: 'full' | 'delta'; readonly bytes: number; readonly entries: number };
    };

/** Where a worker restores its state partitions from. */
export interface RestoreSpec {
  readonly time: number;
  /** Snapshot chains by `operator/partition` (times, oldest first). */
  readonly chains: Readonly<Record<string, readonly number[]>>;
}

/** Every message of the data plane. */
export type ClusterMessage =
  // driver -> worker
  | {
      readonly type: 'assign';
      readonly requestId: number;
      readonly assignment: AssignmentWire;
      /** The app's zero time (batch activity of windowed nodes depends on it). */
      readonly zeroTimeMs: number;
      /** Names the driver's run: a worker rebuilds its state partitions for a new one (restored, never left over). */
      readonly session: string;
      readonly restore?: RestoreSpec;
    }
  | {
      readonly type: 'batch.run';
      readonly time: number;
      readonly allocations: readonly (readonly [number, Allocation])[];
      readonly skipOutputs: boolean;
    }
  | { readonly type: 'batch.commit'; readonly requestId: number; readonly time: number }
  | { readonly type: 'batch.abort'; readonly requestId: number; readonly time: number }
  | {
      readonly type: 'state.capture';
      readonly requestId: number;
      readonly time: number;
      /** `operator/partition` keys whose snapshot must be full. */
      readonly full: readonly string[];
    }
  | { readonly type: 'state.lookup'; readonly requestId: number; readonly nodeId: number; readonly key: unknown }
  | {
      /** To the worker running a receiver: cut its block into the log, and name the batch's range from `from`. */
      readonly type: 'input.allocate';
      readonly requestId: number;
      readonly nodeId: number;
      readonly time: number;
      readonly from: number;
    }
  | { readonly type: 'state.snapshot'; readonly requestId: number; readonly nodeId: number }
  // worker -> worker (and -> driver for outputs)
  | { readonly type: 'piece'; readonly key: string; readonly records: readonly unknown[]; readonly session?: string }
  // worker -> driver
  | {
      readonly type: 'batch.done';
      readonly time: number;
      readonly records: number;
      /** Records set aside by the `dead-letter` policy (omitted when none). */
      readonly deadLetters?: readonly DeadLetter[];
      /** Keys this worker's partitions of each keyed stateful operator hold after the batch, by operator name. */
      readonly stateKeys?: readonly (readonly [string, number])[];
      /** Records this worker read from each input stream, by stream name (omitted when none). */
      readonly inputs?: readonly (readonly [string, number])[];
    }
  | { readonly type: 'batch.failed'; readonly time: number; readonly failure: EncodedFailure | Error }
  | {
      readonly type: 'reply';
      readonly requestId: number;
      readonly ok: boolean;
      readonly value?: unknown;
      readonly failure?: EncodedFailure | Error;
    };

/** Receives the messages addressed to an endpoint, in the order each sender sent them. */
export type MessageHandler = (from: string, message: ClusterMessage) => void;

/**
 * One endpoint's view of the data plane.
 *
 * @example
 * const t = hub.endpoint('w1');
 * t.onMessage((from, m) => console.log(from, m.type));
 * await t.send(DRIVER, { type: 'batch.done', time: 1000, records: 3 });
 */
export interface Transport {
  /** This endpoint's name. */
  readonly self: string;
  /** True when messages are passed by reference (no encoding, errors kept as they are). */
  readonly local: boolean;
  /**
   * Sends a message; resolves once the transport accepted it (a slow receiver makes
   * this wait for credit). Messages to one endpoint arrive in the order sent.
   */
  send(to: string, message: ClusterMessage): Promise<void>;
  onMessage(handler: MessageHandler): void;
  /**
   * Forgets every peer's flow state: sends still waiting (for credit from a peer that
   * died, or for credit lost with chunks a restarting server dropped) fail with
   * `reason`, and every peer gets a whole window again. Called when a new driver run
   * begins: what was in flight belongs to the run that ended.
   */
  reset(reason: Error): void;
  close(): Promise<void>;
}
