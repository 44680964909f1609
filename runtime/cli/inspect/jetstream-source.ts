/**
 * A checkpoint in NATS JetStream as `tributary inspect` reads it: the head and the
 * journal stream read message by message (readJetStreamJournal), the snapshot bucket
 * opened only if it exists, listed and read. Nothing is created, taken or published.
 */
import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import { type ObjectStore, Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetStreamJournalApps, readJetStreamJournal, streamExists } from '../../../journal/jetstream-journal-reader.ts';
import type { SnapshotKey } from '../../../snapshots/snapshot-codec.ts';
import { connectNats, parseNatsUrl, redactNatsUrl } from '../../nats/nats-connection.ts';
import type { CheckpointSource, JournalView, StoredSnapshot } from './checkpoint-source.ts';
import { InspectUsageError } from './errors.ts';

/** How long to try reaching the server before telling the user it cannot be reached. */
const CONNECT_TIMEOUT_MS = 5000;

function objectName(key: SnapshotKey): string {
  return `${encodeURIComponent(key.operator)}/${key.partition}/${key.time}`;
}

function parseObjectName(name: string): SnapshotKey | undefined {
  const m = /^([^/]+)\/(\d+)\/(\d+)$/.exec(name);
  if (!m) return undefined;
  try {
    return { operator: decodeURIComponent(m[1] as string), partition: Number(m[2]), time: Number(m[3]) };
  } catch {
    return undefined;
  }
}

/** Connects once, without the endless reconnects an app uses: inspect must fail fast on a wrong URL. */
async function connect(url: string): Promise<NatsConnection> {
  let target: ReturnType<typeof parseNatsUrl>;
  try {
    target = parseNatsUrl(url);
  } catch (error) {
    throw new InspectUsageError((error as Error).message, { cause: error });
  }
  try {
    return await connectNats(
      { ...target, connection: { ...target.connection, maxReconnectAttempts: 0, timeout: CONNECT_TIMEOUT_MS } },
      'tributary-inspect',
    );
  } catch (error) {
    throw new InspectUsageError(`cannot reach NATS at ${redactNatsUrl(url)}: ${(error as Error).message}`, { cause: error });
  }
}

/** The app to inspect: `app` when given, else the only one the server holds a journal of. */
async function pickApp(jsm: JetStreamManager, url: string, app: string | undefined): Promise<string> {
  if (app !== undefined) return app;
  const apps = await jetStreamJournalApps(jsm);
  if (apps.length === 1) return apps[0] as string;
  if (apps.length === 0) throw new InspectUsageError(`${redactNatsUrl(url)} holds no Tributary checkpoint (no KV_TRIBUTARY_<app>_HEAD)`);
  throw new InspectUsageError(`${redactNatsUrl(url)} holds the checkpoints of several apps: choose one with --app (${apps.join(', ')})`);
}

/**
 * Opens the checkpoint of `app` (or of the only app) on the NATS at `url`.
 *
 * @example
 * const source = await jetStreamSource('nats://127.0.0.1:4222', 'wc');
 */
export async function jetStreamSource(url: string, app: string | undefined): Promise<CheckpointSource> {
  const nc = await connect(url);
  try {
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    const appName = await pickApp(jsm, url, app);
    const journal = await readJetStreamJournal(jsm, appName);
    if (journal === undefined) throw new InspectUsageError(`${redactNatsUrl(url)} holds no journal of app ${appName}`);
    const bucket = `TRIBUTARY_${appName}_SNAPSHOTS`;
    const objects: ObjectStore | undefined = (await streamExists(jsm, `OBJ_${bucket}`)) ? await new Objm(nc).open(bucket) : undefined;
    const replayFrom = journal.head?.replayFromSeq ?? journal.firstSeq;
    const view: JournalView = {
      events: journal.events,
      complete: journal.complete,
      retained: journal.retained,
      framesRead: journal.messages,
      size: {
        events: journal.events.length,
        bytes: journal.bytes,
        stream: journal.stream,
        messages: journal.messages,
        firstSeq: journal.firstSeq,
        lastSeq: journal.lastSeq,
        ...(journal.head ? { replayFromSeq: journal.head.replayFromSeq } : {}),
        tornTail: null,
      },
      // Recovery reads the head and the stream from the head's replay start: damage before it is never read.
      damageBlocksRecovery: journal.damage.some((d) => d.bucket !== undefined || (d.seq ?? 0) >= replayFrom),
      damage: journal.damage.map((d) => ({ kind: d.bucket === undefined ? ('journal' as const) : ('head' as const), ...d })),
      writer: { epoch: journal.head?.epoch ?? null, state: null, pid: null, host: null },
    };
    return {
      store: 'jetstream',
      location: redactNatsUrl(url),
      journal: async () => view,
      async snapshots(): Promise<StoredSnapshot[]> {
        if (objects === undefined) return [];
        const out: StoredSnapshot[] = [];
        for (const info of await objects.list()) {
          const key = parseObjectName(info.name);
          if (key !== undefined && !info.deleted) out.push({ key, bytes: info.size });
        }
        return out.sort((a, b) => a.key.time - b.key.time || a.key.partition - b.key.partition);
      },
      async readSnapshot(key) {
        const data = objects === undefined ? null : await objects.getBlob(objectName(key));
        return data === null ? undefined : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      },
      snapshotWhere: (key) => ({ where: `${bucket}/${objectName(key)}`, bucket, key: objectName(key) }),
      deadLetters: async () => null,
      close: () => nc.close(),
    };
  } catch (error) {
    await nc.close().catch(() => {});
    throw error;
  }
}
