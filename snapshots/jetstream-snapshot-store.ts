/**
 * Snapshots in a JetStream object store bucket per app (`TRIBUTARY_<app>_SNAPSHOTS`),
 * one object per partition snapshot, named `<operator>/<partition>/<time>`. A read
 * checks the object's SHA-256 digest (from its meta message); the frames inside keep
 * their CRC32C and are validated after reading, as on disk.
 */
import { createHash } from 'node:crypto';
import { type JetStreamManager, jetstreamManager, type MsgRequest, StorageType } from '@nats-io/jetstream';
import { type ObjectStore, Objm, setSha256Backend } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { scanFrames } from '../journal/codec.ts';
import { delayMs } from '../runtime/base/clock.ts';
import { CorruptCheckpointError } from '../runtime/base/errors.ts';
import { type Logger, reasonOf } from '../runtime/base/logger.ts';
import type { SnapshotData } from '../runtime/graph/wire.ts';
import { isTransientNatsError } from '../runtime/nats/nats-connection.ts';
import { decodeSnapshot, encodeSnapshot, type SnapshotKey } from './snapshot-codec.ts';
import type { SnapshotStore } from './snapshot-store.ts';

/** Attempts of one store operation across a restart or leader election (about 30 s with 5 s timeouts). */
const ATTEMPTS_MAX = 6;
/**
 * The least time transient failures are retried for: errors that come back at once
 * (503 "JetStream system temporarily unavailable" while a cluster settles) would
 * spend six attempts in 2.5 s, less than an election takes on a busy machine.
 */
const RETRY_WINDOW_MS = 30_000;

/** How long one read of a snapshot may take before it is abandoned and done again. */
const READ_DEADLINE_MS = 20_000;

/** A read that delivered nothing in time, or bytes whose digest is not the leader's: read again. */
class SnapshotReadRetry extends Error {}

/** Rejects with a {@link SnapshotReadRetry} when `promise` has not settled within `ms`. */
async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SnapshotReadRetry(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `op` again while it fails with what a failover causes (timeouts, no leader yet, a stalled or stale read). */
async function retrying<T>(what: string, logger: Logger | undefined, op: () => Promise<T>): Promise<T> {
  let wait = 100;
  const started = performance.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (error) {
      const again = isTransientNatsError(error) || error instanceof SnapshotReadRetry;
      if (!again || (attempt >= ATTEMPTS_MAX && performance.now() - started >= RETRY_WINDOW_MS)) throw error;
      logger?.warn({ reason: reasonOf(error), attempt, what }, 'snapshot store operation failed; retrying');
      await delayMs(wait);
      wait = Math.min(wait * 2, 1000);
    }
  }
}

// node:crypto hashes a 1.5 MB snapshot in ~1 ms; the default pure-JS SHA-256 takes 15-30 ms.
setSha256Backend('native');

function objectName(key: SnapshotKey): string {
  return `${encodeURIComponent(key.operator)}/${key.partition}/${key.time}`;
}

function parseName(name: string): SnapshotKey | undefined {
  const m = /^([^/]+)\/(\d+)\/(\d+)$/.exec(name);
  if (!m) return undefined;
  return { operator: decodeURIComponent(m[1] as string), partition: Number(m[2]), time: Number(m[3]) };
}

/**
 * The JetStream snapshot store.
 *
 * @example
 * const store = new JetStreamSnapshotStore(nc, 'wc', 1, logger);
 */
export class JetStreamSnapshotStore implements SnapshotStore {
  readonly #nc: NatsConnection;
  readonly #bucket: string;
  readonly #replicas: number;
  readonly #logger: Logger | undefined;
  #store: Promise<ObjectStore> | undefined;

  constructor(nc: NatsConnection, appName: string, replicas: number, logger?: Logger) {
    this.#nc = nc;
    this.#bucket = `TRIBUTARY_${appName}_SNAPSHOTS`;
    this.#replicas = replicas;
    this.#logger = logger;
  }

  #os(): Promise<ObjectStore> {
    const store = (this.#store ??= this.#openOrCreate());
    // A failure (server down, election) must not be cached: every later checkpoint would fail with it.
    store.catch(() => {
      if (this.#store === store) this.#store = undefined;
    });
    return store;
  }

  /**
   * Binds to the bucket, creating it only when it does not exist: re-adding an
   * existing stream asks the cluster for placement, which fails while a replica is
   * offline (right after a node restart) although the bucket is usable.
   */
  async #openOrCreate(): Promise<ObjectStore> {
    const objm = new Objm(this.#nc);
    try {
      return await objm.open(this.#bucket);
    } catch (error) {
      if (!/object store not found/.test((error as Error).message)) throw error;
      return objm.create(this.#bucket, { replicas: this.#replicas, storage: StorageType.File });
    }
  }

  /**
   * Opens the bucket now, creating it if needed: the driver does this when it opens
   * the checkpoint, so that workers' first snapshots do not race to create it (a
   * worker's first write was seen waiting 5 s on a bucket another had just created).
   */
  async ready(): Promise<void> {
    await retrying('open the bucket', this.#logger, () => this.#os());
  }

  async write(key: SnapshotKey, data: SnapshotData): Promise<number> {
    const frames: Buffer[] = [];
    for await (const frame of encodeSnapshot(key, data)) frames.push(frame);
    const bytes = Buffer.concat(frames);
    // Without retries a checkpoint right after a failover (even the final one of a graceful stop) is lost.
    await retrying(`write ${objectName(key)}`, this.#logger, async () => (await this.#os()).putBlob({ name: objectName(key) }, bytes));
    return bytes.length;
  }

  async read(key: SnapshotKey): Promise<SnapshotData> {
    const where = `${this.#bucket}/${objectName(key)}`;
    let data: Uint8Array | null;
    try {
      // The object's meta message and chunks are read through the stream leader; chunks that do not
      // match the meta's digest, or a read that stops answering, are read again.
      data = await retrying(`read ${objectName(key)}`, this.#logger, async () => {
        await this.#os();
        const jsm = await jetstreamManager(this.#nc, { checkAPI: false });
        return await withDeadline(readObject(jsm, this.#bucket, objectName(key)), READ_DEADLINE_MS, `reading ${where}`);
      });
    } catch (error) {
      throw new CorruptCheckpointError(`snapshot ${where} cannot be read: ${(error as Error).message}`, { cause: error });
    }
    if (data === null) throw new CorruptCheckpointError(`snapshot ${where} is missing`);
    const scan = scanFrames(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    if (scan.stop)
      throw new CorruptCheckpointError(`snapshot ${where} has a bad frame at offset ${scan.stop.offset} (${scan.stop.reason})`);
    return decodeSnapshot(key, scan.payloads, where);
  }

  /**
   * Deletes the snapshots written before the oldest one `keep` accepts, with one
   * purge by sequence (keep >= the first chunk of that object). Not object by object:
   * the object store deletes with subject-filtered purges and rollups, and a replica
   * restarted while they ran was seen here (nats-server 2.15.2, R3) to keep 49
   * messages its peers had purged, for good. Purges by sequence never diverged. An
   * object written after the oldest kept one and rejected by `keep` stays until the
   * cut passes it (the next full snapshots move it on), so nothing kept is touched.
   */
  async retain(keep: (key: SnapshotKey) => boolean): Promise<void> {
    await retrying('open the bucket', this.#logger, () => this.#os());
    const stream = `OBJ_${this.#bucket}`;
    const jsm = await jetstreamManager(this.#nc, { checkAPI: false });
    const live = (await retrying('list', this.#logger, () => listObjects(jsm, this.#bucket))).filter((info) => !info.deleted);
    const kept = live.filter((info) => {
      const key = parseName(info.name);
      return key === undefined || keep(key);
    });
    if (kept.length === live.length) return;
    // Snapshots are written in time order, so the oldest kept time holds the first chunk to keep:
    // only its objects need locating (a name that does not parse is located too, to be safe).
    const times = kept.map((info) => parseName(info.name)?.time);
    const oldest = Math.min(...times.map((t) => t ?? Number.POSITIVE_INFINITY));
    let cut = Number.POSITIVE_INFINITY;
    for (const info of kept.filter((_, i) => times[i] === undefined || times[i] === oldest)) {
      // The first chunk is found by its subject: on a cluster, workers write their snapshots at the same
      // time and the chunks of several objects interleave (the meta's revision minus the chunk count
      // pointed into another object there, and nothing was ever deleted).
      const chunks = `$O.${this.#bucket}.C.${info.nuid}`;
      const first =
        info.chunks === 0
          ? info.revision
          : (
              await retrying(`locate ${info.name}`, this.#logger, () =>
                jsm.streams.getMessage(stream, { seq: 1, next_by_subj: chunks } as unknown as MsgRequest),
              )
            )?.seq;
      if (first === undefined || first > info.revision) {
        this.#logger?.warn({ object: info.name }, 'the first chunk of a kept snapshot was not found; nothing deleted this time');
        return;
      }
      cut = Math.min(cut, first);
    }
    if (cut === Number.POSITIVE_INFINITY)
      cut = (await retrying('stream info', this.#logger, () => jsm.streams.info(stream))).state.last_seq;
    const state = (await retrying('stream info', this.#logger, () => jsm.streams.info(stream))).state;
    // Purge keeps messages >= seq: never seq <= 1, never beyond the last message (either would empty the stream).
    if (cut > 1 && cut > state.first_seq && cut <= state.last_seq) {
      await retrying(`purge before ${cut}`, this.#logger, () => jsm.streams.purge(stream, { seq: cut }));
    }
  }

  async sizeBytes(): Promise<number> {
    return (await (await this.#os()).status()).size;
  }
}

/** What retention needs of an object: its meta message's sequence (revision) and its chunks. */
interface ListedObject {
  readonly name: string;
  readonly nuid: string;
  readonly chunks: number;
  readonly deleted: boolean;
  readonly revision: number;
}

/**
 * Every object of `bucket` (deleted ones too), read from the newest meta message of
 * each meta subject, through the stream leader. Not `ObjectStore.list()`: each call
 * leaves an ordered consumer on the server until its inactive threshold (5 minutes),
 * and nats-server 2.15 refuses a stream's 1,001st consumer; retention runs at every
 * checkpoint, and with the cluster bucket's reads it filled that limit in minutes.
 */
async function listObjects(jsm: JetStreamManager, bucket: string): Promise<ListedObject[]> {
  const stream = `OBJ_${bucket}`;
  const info = await jsm.streams.info(stream, { subjects_filter: `$O.${bucket}.M.>` });
  const out: ListedObject[] = [];
  for (const subject of Object.keys(info.state.subjects ?? {})) {
    const m = await jsm.streams.getMessage(stream, { last_by_subj: subject });
    if (m === null) continue;
    const meta = m.json<{ name: string; nuid: string; chunks?: number; deleted?: boolean }>();
    out.push({ name: meta.name, nuid: meta.nuid, chunks: meta.chunks ?? 0, deleted: meta.deleted === true, revision: m.seq });
  }
  return out;
}

/**
 * The bytes of object `name` of `bucket`, or null when there is none (or it was
 * deleted): its meta message, then its chunks one by one by subject, through the
 * stream leader, checked against the meta's SHA-256. Not `ObjectStore.get()`: each
 * read leaves an ordered consumer on the server for 5 minutes, and a full snapshot
 * is read back after every write (with nats-server 2.15's 1,000 consumers per stream,
 * a cluster chaos run had 158 of them after 90 s).
 */
async function readObject(jsm: JetStreamManager, bucket: string, name: string): Promise<Uint8Array | null> {
  const stream = `OBJ_${bucket}`;
  // The object store's meta subject: the name in padded base64 with URL-safe characters.
  const encoded = Buffer.from(name, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
  const meta = await jsm.streams.getMessage(stream, { last_by_subj: `$O.${bucket}.M.${encoded}` });
  if (meta === null) return null;
  const info = meta.json<{ nuid: string; chunks?: number; size?: number; digest?: string; deleted?: boolean }>();
  if (info.deleted === true) return null;
  const subject = `$O.${bucket}.C.${info.nuid}`;
  const chunks: Uint8Array[] = [];
  let seq = 1;
  for (let i = 0; i < (info.chunks ?? 0); i++) {
    const m = await jsm.streams.getMessage(stream, { seq, next_by_subj: subject } as unknown as MsgRequest);
    if (m === null || m.seq > meta.seq) throw new SnapshotReadRetry(`${bucket}/${name}: chunk ${i + 1} of ${info.chunks} not found`);
    chunks.push(m.data);
    seq = m.seq + 1;
  }
  const data = Buffer.concat(chunks);
  const digest = `SHA-256=${createHash('sha256').update(data).digest('base64url')}`;
  if (data.length !== (info.size ?? 0) || digest !== info.digest?.replace(/=+$/, '')) {
    throw new SnapshotReadRetry(`${bucket}/${name}: digests do not match (${data.length} of ${info.size} bytes read)`);
  }
  return data;
}
