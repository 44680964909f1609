/**
 * Looks inside the JetStream checkpoint of an app from a test: every message of its
 * journal stream (decoded, with its sequence; the writers' fence markers left out)
 * and its head, read with plain stream-message and KV gets so that no journal
 * instance (and no fencing) is involved.
 */

import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { scanFrames } from '../../journal/codec.ts';
import type { JournalEvent } from '../../journal/events.ts';
import type { JournalHead } from '../../journal/jetstream-head.ts';
import { decodeHead } from '../../journal/jetstream-head.ts';
import { headEvents, journalNames } from '../../journal/jetstream-journal.ts';
import { decodeValue } from '../../runtime/base/cbor.ts';
import { delayMs } from '../../runtime/base/clock.ts';
import { isTransientNatsError } from '../../runtime/nats/nats-connection.ts';
import { connectTo } from './nats-server.ts';

/** One message of a journal stream. */
export interface JournalMessage {
  readonly seq: number;
  readonly subject: string;
  readonly event: JournalEvent;
}

/** The servers of a checkpoint URL (`nats://h:p[,h:p][?...]`), for a test connection. */
export function serversOf(url: string): string[] {
  const hosts = url.replace(/^nats:\/\//, '').replace(/\?.*$/, '');
  return hosts.split(',').map((h) => `nats://${h}`);
}

/**
 * Every message the journal stream of `appName` holds, oldest first ([] when there is
 * no stream). Read again while a request times out: right after a node of a cluster
 * restarts, the test's connection may still be moving to another node.
 */
export async function journalMessages(nc: NatsConnection, appName: string): Promise<JournalMessage[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await readJournalMessages(nc, appName);
    } catch (error) {
      if (attempt >= 6 || !isTransientNatsError(error)) throw error;
      await delayMs(500);
    }
  }
}

async function readJournalMessages(nc: NatsConnection, appName: string): Promise<JournalMessage[]> {
  const { stream } = journalNames(appName);
  const jsm = await jetstreamManager(nc);
  let first: number;
  let last: number;
  try {
    const info = await jsm.streams.info(stream);
    first = info.state.first_seq;
    last = info.state.last_seq;
  } catch (error) {
    if ((error as { status?: number }).status === 404) return [];
    throw error;
  }
  const out: JournalMessage[] = [];
  for (let seq = Math.max(1, first); seq <= last; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    if (m === null) throw new Error(`journal stream ${stream} has no message ${seq} between ${first} and ${last}`);
    if (m.header?.has('Tributary-Fence')) continue;
    const scan = scanFrames(Buffer.from(m.data));
    if (scan.stop || scan.payloads.length !== 1) throw new Error(`journal stream ${stream} message ${seq} is not one frame`);
    out.push({
      seq,
      subject: m.subject,
      event: decodeValue(scan.payloads[0] as Buffer) as JournalEvent,
    });
  }
  return out;
}

/** The head of the journal of `appName`, or undefined when it has none. */
export async function journalHead(nc: NatsConnection, appName: string): Promise<JournalHead | undefined> {
  const { headBucket } = journalNames(appName);
  const jsm = await jetstreamManager(nc);
  const m = await jsm.streams.getMessage(`KV_${headBucket}`, { last_by_subj: `$KV.${headBucket}.head` }).catch(() => null);
  return m === null ? undefined : decodeHead(m.data, headBucket);
}

/**
 * The events of the journal of `appName` behind checkpoint URL `url`, as a reader
 * sees them: the head's configuration and checkpoints, then the stream from the
 * head's replay start (a connection of its own).
 */
export async function readJetStreamJournal(url: string, appName: string): Promise<JournalEvent[]> {
  const nc = await connectTo(serversOf(url));
  try {
    const head = await journalHead(nc, appName);
    const messages = await journalMessages(nc, appName);
    if (head === undefined) return messages.map((m) => m.event);
    return [...headEvents(head), ...messages.filter((m) => m.seq >= head.replayFromSeq).map((m) => m.event)];
  } finally {
    await nc.close();
  }
}

/** Rejects with `what` if `promise` has not settled after `ms`: a bound on a wait, not a pause. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
