/**
 * Connections to NATS from a checkpoint URL such as
 * `nats://user:pass@127.0.0.1:4222,127.0.0.1:4223?replicas=3&token=...&creds=/path&tls=1`,
 * with `nkey=<seed file>` for an nkey user and `tlsca=`, `tlscert=`, `tlskey=` for TLS
 * files. Anything nats.js accepts (authenticators, TLS options) can also be passed as
 * options. Credentials never appear in messages: see {@link redactNatsUrl}.
 */
import { readFileSync } from 'node:fs';
import { JetStreamApiError } from '@nats-io/jetstream';
import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  nkeyAuthenticator,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';
import { delayMs, startStopwatch } from '../base/clock.ts';
import { InvalidConfigError } from '../base/errors.ts';

/** The oldest nats-server that may hold replicated (replicas > 1) checkpoints. */
const CLUSTER_SERVER_VERSION_MIN: readonly [number, number, number] = [2, 10, 0];
/** The 2.9 release that fixed the replica replay bug nats-io/nats-server#4196. */
const REPLAY_BUG_FIXED_IN: readonly [number, number, number] = [2, 9, 18];
/** How long {@link checkNatsServerFor} waits for the first server INFO (the connection may still be connecting). */
const SERVER_INFO_WAIT_MS_MAX = 30_000;
/** Pause before asking again when a flush failed because the connection dropped. */
const SERVER_INFO_RETRY_MS = 250;

/** How to reach NATS for checkpoints, sources and sinks. */
export interface NatsOptions {
  /** nats.js connection options, merged over what the URL says (credentials, TLS, ...). */
  readonly connection?: Partial<NodeConnectionOptions>;
  /** Replicas of the journal stream, the receiver log and the snapshot bucket (default 1; 3 on a cluster). */
  readonly replicas?: number;
}

/** A parsed NATS URL. */
export interface NatsTarget {
  readonly servers: string[];
  readonly replicas: number;
  readonly connection: Partial<NodeConnectionOptions>;
}

/**
 * True for checkpoint locations that name NATS rather than a directory.
 *
 * @example
 * isNatsUrl('nats://127.0.0.1:4222') // true
 */
export function isNatsUrl(location: string): boolean {
  return /^(nats|tls):\/\//i.test(location);
}

/**
 * Reads servers, credentials and settings from a NATS URL.
 *
 * @example
 * parseNatsUrl('nats://a:b@127.0.0.1:4222?replicas=3').replicas // 3
 */
export function parseNatsUrl(url: string, options: NatsOptions = {}): NatsTarget {
  const match = /^(nats|tls):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?]+)(?:\/)?(?:\?(.*))?$/i.exec(url);
  if (!match) {
    throw new InvalidConfigError(
      `not a NATS URL: ${redactNatsUrl(url)} (expected nats://[user[:pass]@]host:port[,host:port][?replicas=n])`,
    );
  }
  const [, scheme, user, pass, hosts, query] = match;
  const params = new URLSearchParams(query ?? '');
  const servers = (hosts as string).split(',').map((h) => `${scheme === 'tls' ? 'tls' : 'nats'}://${h}`);
  const connection: Partial<NodeConnectionOptions> = { servers };
  if (user)
    Object.assign(
      connection,
      pass !== undefined ? { user: decodeURIComponent(user), pass: decodeURIComponent(pass) } : { token: decodeURIComponent(user) },
    );
  const token = params.get('token');
  if (token) connection.token = token;
  const creds = params.get('creds');
  if (creds) {
    try {
      connection.authenticator = credsAuthenticator(readFileSync(creds));
    } catch (error) {
      throw new InvalidConfigError(`cannot read NATS credentials ${creds}: ${(error as Error).message}`);
    }
  }
  const nkey = params.get('nkey');
  if (nkey) {
    let seed: Uint8Array;
    try {
      seed = new TextEncoder().encode(readFileSync(nkey, 'utf8').trim());
    } catch (error) {
      throw new InvalidConfigError(`cannot read the NATS nkey seed file ${nkey}: ${(error as Error).message}`);
    }
    connection.authenticator = nkeyAuthenticator(seed);
  }
  const tlsFiles = { caFile: params.get('tlsca'), certFile: params.get('tlscert'), keyFile: params.get('tlskey') };
  if (tlsFiles.caFile || tlsFiles.certFile || tlsFiles.keyFile || params.get('tls') === '1' || scheme === 'tls') {
    connection.tls = Object.fromEntries(Object.entries(tlsFiles).filter(([, v]) => v)) as {
      caFile?: string;
      certFile?: string;
      keyFile?: string;
    };
  }
  const replicas = Number(options.replicas ?? params.get('replicas') ?? 1);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new InvalidConfigError(`NATS replicas must be a whole number from 1 to 5, got ${String(replicas)}`);
  }
  return { servers, replicas, connection: { ...connection, ...options.connection } };
}

/**
 * A NATS URL fit for messages and logs: the user's password, a token in the user
 * part and secret query values are replaced by `***` (file paths of creds, nkey
 * seeds and TLS keys are kept: they name where the secret is, not the secret).
 *
 * @example
 * redactNatsUrl('nats://alice:s3cret@h:4222?token=t') // 'nats://alice:***@h:4222?token=***'
 */
export function redactNatsUrl(url: string): string {
  return url
    .replace(/^([a-z]+:\/\/)([^:@/]*):([^@/]*)@/i, '$1$2:***@')
    .replace(/^([a-z]+:\/\/)([^:@/]+)@/i, '$1***@')
    .replace(/([?&](?:token|pass|password)=)[^&]*/gi, '$1***');
}

/**
 * Connects with settings that ride out server restarts and leader elections.
 *
 * @example
 * const nc = await connectNats(parseNatsUrl(url), 'wc-journal');
 */
export async function connectNats(target: NatsTarget, name: string): Promise<NatsConnection> {
  return connect({
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: false,
    ...target.connection,
  });
}

/**
 * True for failures that a server restart or a leader election causes and a retry
 * cures: request timeouts, "no responders" (no stream leader yet; the jetstream
 * client wraps it in an unexported JetStreamNotEnabled), and API errors that a
 * node's absence causes (status 503, a stream offline, no placement for a peer offline).
 *
 * @example
 * if (isTransientNatsError(error)) await retry();
 */
export function isTransientNatsError(error: unknown): boolean {
  if (error instanceof TimeoutError) return true;
  if (error instanceof RequestError) return error.isNoResponders();
  if (error instanceof JetStreamApiError) {
    // 503: JetStream temporarily unavailable; 10118: the stream is offline; 10005 naming an
    // offline peer: a cluster node is down for the moment (an election, a restart).
    // "duplicate message id is in process": a retry reached the leader while the first attempt was still
    // being replicated; the next retry gets that attempt's ack.
    return (
      error.status === 503 ||
      error.code === 10118 ||
      (error.code === 10005 && /offline/.test(error.message)) ||
      /duplicate message id is in process/.test(error.message)
    );
  }
  const cause = (error as { cause?: unknown } | null)?.cause;
  return error instanceof Error && error.name === 'JetStreamNotEnabled' && cause instanceof RequestError && cause.isNoResponders();
}

/**
 * The numeric part of a nats-server version: `'2.9.10'`, `'v2.15.2'` and
 * `'2.12.0-RC.1'` give `[2, 9, 10]`, `[2, 15, 2]` and `[2, 12, 0]`.
 *
 * @example
 * parseServerVersion('v2.10.4') // [2, 10, 4]
 */
export function parseServerVersion(v: string): [number, number, number] {
  const match = /^v?(\d+)\.(\d+)(?:\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?)?$/.exec(v.trim());
  if (!match) throw new InvalidConfigError(`not a nats-server version: ${JSON.stringify(v)} (expected major.minor.patch, e.g. 2.10.4)`);
  return [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)];
}

/** Negative, zero or positive as version `a` is older than, equal to or newer than `b`. */
function compareVersions(a: readonly [number, number, number], b: readonly [number, number, number]): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/**
 * Refuses replicated checkpoints on servers older than 2.10: before 2.9.18 a
 * restarted replica re-runs the purges in its Raft log as "compact up to the last
 * sequence" and silently drops acked journal messages the other replicas keep
 * (nats-io/nats-server#4196), and 2.9 is end of life. A single replica has no
 * replay to diverge, so any server may hold it.
 *
 * @example
 * assertServerSupportsReplicas('2.9.10', 1); // fine
 * assertServerSupportsReplicas('2.9.10', 3); // throws InvalidConfigError (INVALID_CONFIG)
 */
export function assertServerSupportsReplicas(serverVersion: string, replicas: number): void {
  if (replicas <= 1) return;
  const version = parseServerVersion(serverVersion);
  if (compareVersions(version, CLUSTER_SERVER_VERSION_MIN) >= 0) return;
  const shown = version.join('.');
  const why =
    compareVersions(version, REPLAY_BUG_FIXED_IN) < 0
      ? `whose restarted replicas can silently drop acked journal messages (nats-io/nats-server#4196, fixed in ${REPLAY_BUG_FIXED_IN.join('.')})`
      : 'an end-of-life release whose older versions silently drop acked journal messages on restarted replicas (nats-io/nats-server#4196)';
  throw new InvalidConfigError(
    `a clustered checkpoint (replicas=${replicas}) needs nats-server ${CLUSTER_SERVER_VERSION_MIN.slice(0, 2).join('.')} or newer; ` +
      `this server is ${shown}, ${why}: upgrade the servers or use replicas=1`,
  );
}

/**
 * Checks that the server `nc` is connected to may hold `replicas` replicas (see
 * {@link assertServerSupportsReplicas}); call it right after connecting. With
 * `waitOnFirstConnect: false` the server's INFO may arrive only later, so this waits
 * for it, at most `waitMs`, and then throws a nats.js TimeoutError (which
 * {@link isTransientNatsError} treats as transient). With one replica it returns at
 * once without waiting. Only the server this connection reached is checked: a
 * cluster is expected to run one version.
 *
 * @example
 * const nc = await connectNats(target, 'wc-driver');
 * await checkNatsServerFor(nc, target.replicas); // InvalidConfigError on 2.9 with replicas > 1
 */
export async function checkNatsServerFor(nc: NatsConnection, replicas: number, waitMs = SERVER_INFO_WAIT_MS_MAX): Promise<void> {
  if (replicas <= 1) return;
  assertServerSupportsReplicas(nc.info?.version ?? (await waitForServerVersion(nc, waitMs)), replicas);
}

/** The version in the server INFO of `nc`, once it arrived: a flush completes only after the connect. */
async function waitForServerVersion(nc: NatsConnection, waitMs: number): Promise<string> {
  const stopwatch = startStopwatch();
  for (;;) {
    const leftMs = waitMs - stopwatch.elapsedMs();
    if (leftMs <= 0 || nc.isClosed()) break;
    // A dropped connection rejects pending flushes; the reconnect brings a new INFO, so ask again.
    // The delay is unref'd, so the one left behind when the flush wins keeps nothing alive.
    const flushed = await Promise.race([
      nc.flush().then(
        () => true,
        () => false,
      ),
      delayMs(leftMs).then(() => true),
    ]);
    const version = nc.info?.version;
    if (version !== undefined) return version;
    if (!flushed) await delayMs(SERVER_INFO_RETRY_MS);
  }
  const what = nc.isClosed()
    ? 'the connection closed before a NATS server sent its INFO'
    : `no INFO from a NATS server within ${waitMs} ms`;
  throw new TimeoutError({ cause: new Error(`${what}, so the server version could not be checked`) });
}
