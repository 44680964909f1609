/**
 * Checks that every replica of a replicated JetStream stream holds the same
 * messages, by reading each server's monitoring endpoint (`/jsz`) instead of the
 * stream API: the API answers from the leader, so a follower that silently dropped
 * acked messages (nats-server 2.9's replay bug, see NOTES.md) looks healthy there,
 * and a later read that lands on it loses data. Followers lag for a moment after
 * writes, so the check polls until the replicas agree and reports only what still
 * differs after a bounded wait.
 */
import * as http from 'node:http';
import { holdMs, startStopwatch } from '../../base/clock.ts';

/** How long replicas may take to agree before a difference counts as a divergence. */
const REPLICA_WAIT_MS_DEFAULT = 15_000;
/** Pause between two reads of every server. */
const REPLICA_POLL_MS_DEFAULT = 250;
/** How long one `/jsz` request may take (a server being restarted may not answer). */
const JSZ_REQUEST_TIMEOUT_MS_DEFAULT = 2_000;
/** Largest `/jsz` answer read; a few streams take a few KB, so more means something is wrong. */
const JSZ_RESPONSE_BYTES_MAX = 16 * 1024 * 1024;
/** The account of a server without accounts configured; its streams are named without a prefix. */
const GLOBAL_ACCOUNT = '$G';

/** What one server's copy of one stream holds, as its `/jsz` reports it. */
export interface StreamReplica {
  /** The stream's name (prefixed with `<account>/` outside the global account). */
  readonly stream: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly messages: number;
  /** Every server of the stream's Raft group, this one included: one name for an R1 stream. */
  readonly peers: readonly string[];
}

/** What one server answered: the streams it holds, or why it could not be read. */
export type ServerStreams =
  | { readonly server: string; readonly streams: readonly StreamReplica[] }
  | { readonly server: string; readonly error: string };

/** One stream whose replicas differ, with a line describing every replica. */
export interface ReplicaDivergence {
  readonly stream: string;
  /** E.g. `TRIBUTARY_x: n1 first 709 last 1072 msgs 364 / n2 first 1065 last 1072 msgs 8 / n3 ...`. */
  readonly line: string;
}

/**
 * Compares the replicas of every replicated stream in already-read server answers:
 * all replicas of a stream must report the same first sequence, last sequence and
 * message count. A server of a stream's group that holds no copy, did not answer,
 * or was not asked is a divergence too, since agreement cannot be shown without it.
 *
 * Pure (no I/O), so that the comparison is tested on hand-made answers.
 *
 * @example
 * compareReplicas([
 *   { server: 'n1', streams: [{ stream: 'S', firstSeq: 1, lastSeq: 9, messages: 9, peers: ['n1', 'n2'] }] },
 *   { server: 'n2', streams: [{ stream: 'S', firstSeq: 5, lastSeq: 9, messages: 5, peers: ['n1', 'n2'] }] },
 * ]); // [{ stream: 'S', line: 'S: n1 first 1 last 9 msgs 9 / n2 first 5 last 9 msgs 5' }]
 */
export function compareReplicas(answers: readonly ServerStreams[], include: (stream: string) => boolean = () => true): ReplicaDivergence[] {
  const byServer = new Map(answers.map((a) => [a.server, a]));
  const copies = new Map<string, Map<string, StreamReplica>>();
  for (const answer of answers) {
    if (!('streams' in answer)) continue;
    for (const replica of answer.streams) {
      if (!include(replica.stream)) continue;
      const held = copies.get(replica.stream) ?? new Map<string, StreamReplica>();
      held.set(answer.server, replica);
      copies.set(replica.stream, held);
    }
  }
  const divergences: ReplicaDivergence[] = [];
  for (const [stream, held] of [...copies].sort(([a], [b]) => a.localeCompare(b))) {
    // The group is whatever any holder names: a server that lost the stream entirely names nothing.
    const group = new Set<string>(held.keys());
    for (const replica of held.values()) for (const peer of replica.peers) group.add(peer);
    if (group.size < 2) continue;
    const servers = [...group].sort();
    const states = servers.map((server) => held.get(server));
    const [first] = states;
    if (first !== undefined && states.every((s) => s !== undefined && sameState(s, first))) continue;
    const parts = servers.map((server, i) => `${server} ${describe(states[i], byServer.get(server))}`);
    divergences.push({ stream, line: `${stream}: ${parts.join(' / ')}` });
  }
  return divergences;
}

function sameState(a: StreamReplica, b: StreamReplica): boolean {
  return a.firstSeq === b.firstSeq && a.lastSeq === b.lastSeq && a.messages === b.messages;
}

function describe(replica: StreamReplica | undefined, answer: ServerStreams | undefined): string {
  if (replica !== undefined) return `first ${replica.firstSeq} last ${replica.lastSeq} msgs ${replica.messages}`;
  if (answer === undefined) return 'not asked';
  if ('error' in answer) return `unreachable (${answer.error})`;
  return 'missing (no copy of the stream)';
}

/** A server whose monitoring endpoint can be read; `monitoringUrl` is read anew at each poll (it changes on restart). */
export interface MonitoredServer {
  /** `server_name`, as the streams' Raft groups name their peers. */
  readonly name: string;
  /** `http://127.0.0.1:<port>`. */
  readonly monitoringUrl: string;
}

/** Options of {@link waitForReplicaAgreement}. */
export interface ReplicaCheckOptions {
  /** Which streams to check, by name (default: every replicated stream). */
  readonly include?: (stream: string) => boolean;
  /** How long replicas may take to agree (default 15 s). */
  readonly waitMs?: number;
  /** Pause between two reads of every server (default 250 ms). */
  readonly pollMs?: number;
  /** Timeout of one `/jsz` request (default 2 s). */
  readonly requestTimeoutMs?: number;
}

/** The outcome of {@link waitForReplicaAgreement}. */
export interface ReplicaCheck {
  /** Replicated streams the check saw (sorted): an empty list checked nothing. */
  readonly streams: readonly string[];
  /** Streams whose replicas never agreed within the wait. */
  readonly divergences: readonly ReplicaDivergence[];
}

/**
 * Reads every server's `/jsz` until the replicas of each replicated stream have
 * agreed at least once, or the wait ends; whatever never agreed is a divergence.
 * A stream counts as agreed once any single poll saw all its replicas equal, so
 * that a stream still being written to (where three reads rarely land between the
 * same two writes) passes as soon as its followers caught up.
 *
 * Why: a follower that lost acked messages stays different for good, while one
 * that only lags agrees within a moment; the bounded wait tells the two apart.
 *
 * @example
 * const { divergences } = await waitForReplicaAgreement(cluster.servers, { include: (s) => s.startsWith('TRIBUTARY_') });
 * for (const d of divergences) console.log(d.line);
 */
export async function waitForReplicaAgreement(
  servers: readonly MonitoredServer[],
  options: ReplicaCheckOptions = {},
): Promise<ReplicaCheck> {
  const include = options.include ?? (() => true);
  const waitMs = options.waitMs ?? REPLICA_WAIT_MS_DEFAULT;
  const pollMs = options.pollMs ?? REPLICA_POLL_MS_DEFAULT;
  const watch = startStopwatch();
  const seen = new Set<string>();
  const agreed = new Set<string>();
  for (;;) {
    const answers = await readServers(servers, options.requestTimeoutMs ?? JSZ_REQUEST_TIMEOUT_MS_DEFAULT);
    for (const stream of replicatedStreams(answers, include)) seen.add(stream);
    const differing = compareReplicas(answers, include);
    for (const stream of seen) if (!differing.some((d) => d.stream === stream)) agreed.add(stream);
    const pending = differing.filter((d) => !agreed.has(d.stream));
    if (pending.length === 0 || watch.elapsedMs() >= waitMs) return { streams: [...seen].sort(), divergences: pending };
    await holdMs(pollMs);
  }
}

/** Names of the included streams that some server reports with more than one peer. */
function replicatedStreams(answers: readonly ServerStreams[], include: (stream: string) => boolean): string[] {
  const names = new Set<string>();
  for (const answer of answers) {
    if (!('streams' in answer)) continue;
    for (const r of answer.streams) if (include(r.stream) && r.peers.length > 1) names.add(r.stream);
  }
  return [...names];
}

/**
 * Reads the streams every server holds, all servers at once so that the answers
 * describe nearly the same moment; a server that does not answer is reported, not thrown.
 *
 * @example
 * const answers = await readServers(cluster.servers, 2000);
 */
export async function readServers(servers: readonly MonitoredServer[], timeoutMs: number): Promise<ServerStreams[]> {
  return Promise.all(
    servers.map(async (server): Promise<ServerStreams> => {
      try {
        const url = `${server.monitoringUrl}/jsz?accounts=true&streams=true`;
        return { server: server.name, streams: parseJsz(server.name, await getJson(url, timeoutMs)) };
      } catch (error) {
        return { server: server.name, error: error instanceof Error ? error.message : String(error) };
      }
    }),
  );
}

/** The replicas a `/jsz?accounts=true&streams=true` answer describes; refuses an answer of another shape. */
function parseJsz(server: string, body: unknown): StreamReplica[] {
  const accounts = field(body, 'account_details') ?? [];
  if (!Array.isArray(accounts)) throw new Error('account_details is not a list');
  const out: StreamReplica[] = [];
  for (const account of accounts) {
    const accountName = field(account, 'name');
    const details = field(account, 'stream_detail') ?? [];
    if (!Array.isArray(details)) throw new Error('stream_detail is not a list');
    for (const detail of details) {
      const name = field(detail, 'name');
      const state = field(detail, 'state');
      if (typeof name !== 'string') throw new Error('a stream without a name');
      const replicas = field(field(detail, 'cluster'), 'replicas') ?? [];
      if (!Array.isArray(replicas)) throw new Error(`${name}: cluster.replicas is not a list`);
      const peers = [server, ...replicas.map((r) => field(r, 'name')).filter((n): n is string => typeof n === 'string')];
      out.push({
        stream: accountName === GLOBAL_ACCOUNT || accountName === undefined ? name : `${String(accountName)}/${name}`,
        firstSeq: count(state, 'first_seq', name),
        lastSeq: count(state, 'last_seq', name),
        messages: count(state, 'messages', name),
        peers,
      });
    }
  }
  return out;
}

function field(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
}

function count(state: unknown, key: string, stream: string): number {
  const value = field(state, key) ?? 0;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new Error(`${stream}: state.${key} is not a count`);
  return value;
}

/** GETs `url` (plain HTTP, no connection reuse: the server may be restarted between polls) and parses its JSON. */
function getJson(url: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent: false, timeout: timeoutMs }, (response) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      response.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > JSZ_RESPONSE_BYTES_MAX) request.destroy(new Error(`answer larger than ${JSZ_RESPONSE_BYTES_MAX} bytes`));
        else chunks.push(chunk);
      });
      response.on('error', reject);
      response.on('end', () => {
        if (response.statusCode !== 200) {
          reject(new Error(`HTTP ${response.statusCode}`));
          return;
        }
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (error) {
          reject(error);
        }
      });
    });
    request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on('error', reject);
  });
}
