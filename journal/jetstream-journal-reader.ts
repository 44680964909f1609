/**
 * Reading an app's JetStream journal without owning it: the head is read, not taken
 * (no epoch + 1, no fence marker), and messages are fetched one by one with the
 * stream's get API, so the stream, the head bucket and their consumers stay as they
 * were. For `tributary inspect`, which may look at an app while it runs; every
 * message is read, so each damaged one is listed, not only the first.
 */
import { JetStreamApiError, type JetStreamManager } from '@nats-io/jetstream';
import { scanFrames } from './codec.ts';
import type { JournalEvent } from './events.ts';
import { decodeHead, type JournalHead } from './jetstream-head.ts';
import { decodeJournalMessage, FENCE_HEADER, HEAD_KEY, headEvents, journalNames } from './jetstream-journal.ts';

type Checkpoint = Extract<JournalEvent, { type: 'checkpoint.completed' }>;

/** A journal message or head that does not read back, named by stream and sequence (or bucket and key). */
export interface JetStreamJournalDamage {
  /** `stream TRIBUTARY_a message 12` or `KV TRIBUTARY_a_HEAD/head`. */
  readonly where: string;
  readonly stream?: string;
  readonly seq?: number;
  readonly bucket?: string;
  readonly key?: string;
  /** Byte offset of the bad frame within the message. */
  readonly offset: number;
  readonly reason: string;
}

/** What a read-only pass over an app's JetStream journal found. */
export interface JetStreamJournalRead {
  readonly stream: string;
  readonly headBucket: string;
  /** The head, if there is one and it reads back. */
  readonly head: JournalHead | undefined;
  readonly messages: number;
  readonly bytes: number;
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** The events recovery would fold: the head's, then the stream's from the head's replay start. */
  readonly events: readonly JournalEvent[];
  /** True when nothing before the replay start may have been deleted. */
  readonly complete: boolean;
  /** Checkpoints whose snapshots retention keeps: the head's and any committed after its newest. */
  readonly retained: readonly Checkpoint[];
  readonly damage: readonly JetStreamJournalDamage[];
}

/** True when the stream `name` exists; read through the stream info API only. */
export async function streamExists(jsm: JetStreamManager, name: string): Promise<boolean> {
  try {
    await jsm.streams.info(name);
    return true;
  } catch (error) {
    if (error instanceof JetStreamApiError && error.status === 404) return false;
    throw error;
  }
}

/**
 * The apps that keep a journal head on this server, from the names of their head
 * buckets' streams (`KV_TRIBUTARY_<app>_HEAD`).
 *
 * @example
 * await jetStreamJournalApps(jsm) // ['wc']
 */
export async function jetStreamJournalApps(jsm: JetStreamManager): Promise<string[]> {
  const apps: string[] = [];
  for await (const name of jsm.streams.names()) {
    const m = /^KV_TRIBUTARY_(.+)_HEAD$/.exec(name);
    if (m) apps.push(m[1] as string);
  }
  return apps.sort();
}

/** The head as stored (the KV's last message of its key), or why it does not read. */
async function readHead(
  jsm: JetStreamManager,
  bucket: string,
): Promise<{ head: JournalHead | undefined; damage: JetStreamJournalDamage | undefined }> {
  const where = `KV ${bucket}/${HEAD_KEY}`;
  if (!(await streamExists(jsm, `KV_${bucket}`))) return { head: undefined, damage: undefined };
  const m = await jsm.streams.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${HEAD_KEY}` });
  const op = m?.header?.get('KV-Operation');
  if (m === null || op === 'DEL' || op === 'PURGE') return { head: undefined, damage: undefined };
  try {
    return { head: decodeHead(m.data, where), damage: undefined };
  } catch (error) {
    const scan = scanFrames(Buffer.from(m.data));
    const offset = scan.stop?.offset ?? scan.offsets[1] ?? 0;
    return { head: undefined, damage: { where, bucket, key: HEAD_KEY, offset, reason: (error as Error).message } };
  }
}

/**
 * Reads the journal of `appName` (head and every stream message) without changing
 * anything; undefined when the app has no journal stream.
 *
 * @example
 * const read = await readJetStreamJournal(jsm, 'wc');
 */
export async function readJetStreamJournal(jsm: JetStreamManager, appName: string): Promise<JetStreamJournalRead | undefined> {
  const { stream, headBucket } = journalNames(appName);
  if (!(await streamExists(jsm, stream))) return undefined;
  const info = await jsm.streams.info(stream);
  const { head, damage: headDamage } = await readHead(jsm, headBucket);
  const damage: JetStreamJournalDamage[] = headDamage ? [headDamage] : [];
  const { first_seq: firstSeq, last_seq: lastSeq, messages, bytes } = info.state;
  const replayFrom = head?.replayFromSeq ?? firstSeq;
  const streamEvents: { seq: number; event: JournalEvent }[] = [];
  for (let seq = firstSeq; seq <= lastSeq && messages > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    if (m === null) {
      // A sequence the replay needs is gone; one before it was garbage collected.
      if (seq >= replayFrom) damage.push({ where: `stream ${stream} message ${seq}`, stream, seq, offset: 0, reason: 'missing' });
      continue;
    }
    if (m.header?.has(FENCE_HEADER)) continue;
    try {
      streamEvents.push({ seq, event: decodeJournalMessage(m.data, stream, seq) });
    } catch (error) {
      const scan = scanFrames(Buffer.from(m.data));
      const offset = scan.stop?.offset ?? scan.offsets[1] ?? 0;
      damage.push({ where: `stream ${stream} message ${seq}`, stream, seq, offset, reason: (error as Error).message });
    }
  }
  const replayed = streamEvents.filter((e) => e.seq >= replayFrom).map((e) => e.event);
  const headCheckpoints = head?.checkpoints ?? [];
  const newest = Math.max(Number.NEGATIVE_INFINITY, ...headCheckpoints.map((c) => c.time));
  const later = replayed.filter((e): e is Checkpoint => e.type === 'checkpoint.completed' && e.time > newest);
  return {
    stream,
    headBucket,
    head,
    messages,
    bytes,
    firstSeq,
    lastSeq,
    events: [...(head ? headEvents(head) : []), ...replayed],
    complete: head ? !head.truncated : firstSeq <= 1,
    retained: [...headCheckpoints, ...later],
    damage,
  };
}
