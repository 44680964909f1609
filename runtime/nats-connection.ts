/**
 * Connections to NATS from a checkpoint URL such as
 * `nats://user:pass@127.0.0.1:4222,127.0.0.1:4223?replicas=3&token=...&creds=/path&tls=1`.
 * Anything nats.js accepts (authenticators, TLS files) can also be passed as options.
 */
import { readFileSync } from 'node:fs';
import { JetStreamApiError } from '@nats-io/jetstream';
import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';
import { InvalidConfigError } from './errors.ts';

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
  if (!match) throw new InvalidConfigError(`not a NATS URL: ${url} (expected nats://[user[:pass]@]host:port[,host:port][?replicas=n])`);
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
  if (params.get('tls') === '1' || scheme === 'tls') connection.tls = {};
  const replicas = Number(options.replicas ?? params.get('replicas') ?? 1);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new InvalidConfigError(`NATS replicas must be a whole number from 1 to 5, got ${String(replicas)}`);
  }
  return { servers, replicas, connection: { ...connection, ...options.connection } };
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
 * client wraps it in an unexported JetStreamNotEnabled), and API errors with status
 * 503 (JetStream temporarily unavailable).
 *
 * @example
 * if (isTransientNatsError(error)) await retry();
 */
export function isTransientNatsError(error: unknown): boolean {
  if (error instanceof TimeoutError) return true;
  if (error instanceof RequestError) return error.isNoResponders();
  if (error instanceof JetStreamApiError) return error.status === 503;
  const cause = (error as { cause?: unknown } | null)?.cause;
  return error instanceof Error && error.name === 'JetStreamNotEnabled' && cause instanceof RequestError && cause.isNoResponders();
}
