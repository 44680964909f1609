/**
 * The write-ahead log of a receiver on a cluster: one JetStream stream per receiver
 * input (`TRIBUTARY_<app>_WAL_<hash of the input key>`). The worker that runs the
 * receiver appends each block it cuts, then reports the batch's allocation as the
 * sequence range from the driver's position to the log's end; any worker reads a
 * range back. The range covers every block in the log up to its end, whoever wrote
 * it (a previous reader closing, a cut whose allocation a crash kept out of the
 * journal), so nothing the receiver accepted is skipped or read twice.
 */
import { createHash } from 'node:crypto';
import { JetStreamApiError, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { encodeValue } from '../../runtime/base/cbor.ts';
import type { Allocation, ReceivedBlock, SetAside } from '../../runtime/graph/wire.ts';

/**
 * The records of logged blocks, handing their dead letters to `setAside`.
 *
 * @example
 * walRecords([[1, 2], { records: [3], letters: [{ record: 'x', error: 'bad' }] }], push) // [1, 2, 3]
 */
export function walRecords(messages: readonly unknown[], setAside?: (letter: SetAside) => void): unknown[] {
  const out: unknown[] = [];
  for (const m of messages) {
    if (Array.isArray(m)) {
      for (const r of m) out.push(r);
      continue;
    }
    const block = m as { records: readonly unknown[]; letters: readonly SetAside[] };
    for (const r of block.records) out.push(r);
    for (const l of block.letters) setAside?.(l);
  }
  return out;
}

/** Names of the log of one receiver input. */
export interface WalNames {
  readonly stream: string;
  readonly subject: string;
}

/**
 * The log's names for input `inputKey` of `app`.
 *
 * @example
 * walNames('wc', 'socketTextStream#1') // { stream: 'TRIBUTARY_wc_WAL_1f2e...', subject: 'tributary.wc.wal.1f2e...' }
 */
export function walNames(app: string, inputKey: string): WalNames {
  const hash = createHash('sha256').update(inputKey).digest('hex').slice(0, 16);
  return { stream: `TRIBUTARY_${app}_WAL_${hash}`, subject: `tributary.${app}.wal.${hash}` };
}

/**
 * Creates the log if it does not exist; resolves with the sequence after its end.
 *
 * @example
 * const next = await ensureWal(nc, names, 1);
 */
export async function ensureWal(nc: NatsConnection, names: WalNames, replicas: number): Promise<number> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  try {
    return (await jsm.streams.info(names.stream)).state.last_seq + 1;
  } catch (error) {
    if (!(error instanceof JetStreamApiError && error.status === 404)) throw error;
  }
  try {
    await jsm.streams.add({
      name: names.stream,
      subjects: [names.subject],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      num_replicas: replicas,
      duplicate_window: 120_000_000_000,
    });
  } catch (error) {
    // Another process created it meanwhile.
    if (!(error instanceof JetStreamApiError && /already in use/.test(error.message))) throw error;
  }
  return (await jsm.streams.info(names.stream)).state.last_seq + 1;
}

/**
 * Appends a block (deduplicated by its id) and resolves with its sequence.
 *
 * @example
 * const seq = await appendBlock(nc, names, block);
 */
export async function appendBlock(nc: NatsConnection, names: WalNames, block: ReceivedBlock): Promise<number> {
  // The records alone, or with the block's dead letters (see walRecords).
  const body = block.letters === undefined ? block.records : { records: block.records, letters: block.letters };
  const ack = await jetstream(nc).publish(names.subject, encodeValue(body), { msgID: block.id, timeout: 10_000 });
  return ack.seq;
}

/**
 * The allocation of a batch: from the driver's position to the log's end.
 *
 * @example
 * await walAllocation(nc, names, 17) // { type: 'jetstream', stream, from: 17, to: 21 }
 */
export async function walAllocation(nc: NatsConnection, names: WalNames, from: number): Promise<Allocation> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const last = (await jsm.streams.info(names.stream)).state.last_seq;
  return { type: 'jetstream', stream: names.stream, from, to: Math.max(from, last + 1) };
}
