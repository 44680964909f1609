/**
 * The journal: an append-only log of metadata events with one writer at a time.
 * Implemented by the file journal (embedded default) and the JetStream journal.
 */
import type { JournalEvent } from './events.ts';

/** What opening a journal found. */
export interface JournalContents {
  /** The writer's epoch: one more than the previous writer's. */
  readonly epoch: number;
  /** Every retained event, oldest first (heads repeat earlier facts: fold them idempotently). */
  readonly events: readonly JournalEvent[];
  /** True when nothing was ever deleted: the events go back to the app's first start. */
  readonly complete: boolean;
}

/**
 * An append-only, fenced event log.
 *
 * @example
 * const contents = await journal.open();
 * await journal.append({ v: 1, type: 'batch.completed', time: 1000 });
 * await journal.sync();
 */
export interface Journal {
  /** Takes the writer lock (FENCED if another live driver holds it) and reads the log. */
  open(): Promise<JournalContents>;
  /** Appends one event (validated first); written through, not yet fsynced. */
  append(event: JournalEvent): Promise<void>;
  /** Makes every appended event durable (a commit point); FENCED once another driver took over. */
  sync(): Promise<void>;
  /**
   * Declares `head` the facts a reader needs from everything journaled so far, so the
   * journal may forget the rest: the file journal starts a new segment with them and
   * deletes all but the newest `keepSegments` (at least 1) segments; the JetStream
   * journal keeps the configuration and checkpoints in its KV head and replays from
   * the oldest other fact of the last `keepSegments` rolls. FENCED once another
   * driver took over.
   */
  roll(head: readonly JournalEvent[], keepSegments: number): Promise<void>;
  /** Bytes the journal occupies. */
  sizeBytes(): Promise<number>;
  /** Releases the writer lock. */
  close(): Promise<void>;
  /** Stops using the journal without a goodbye, as a killed process would (tests). */
  abandon(): void;
}
