/**
 * Starts real nats-server processes on loopback: one server, or a JetStream
 * cluster, each in its own temporary directory, and kills them again. The tests
 * and the chaos runner get their servers from here, so that ports, store
 * directories and clean-up work the same way everywhere (the pattern of nats.js's
 * own test launcher).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { promises as fs, constants as fsConstants, rmSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { connect } from '@nats-io/transport-node';

/** How often the ports file of a starting server is looked for. */
const PORTS_FILE_POLL_MS = 50;
/** How long one server may take to write its ports file and accept a TCP connection (seconds when 2 cores are busy). */
const SERVER_READY_TIMEOUT_MS = 20_000;
/** How long a cluster may take to elect its JetStream meta leader (NOTES: seconds). */
const CLUSTER_READY_TIMEOUT_MS = 20_000;
/** Pause between two JetStream readiness probes of a cluster. */
const CLUSTER_READY_POLL_MS = 100;
/** How much of a server's stderr is kept for error messages. */
const STDERR_TAIL_BYTES_MAX = 4_096;
/** Well-known NATS ports (client, route, monitoring) that the tests never use. */
const RESERVED_PORTS = new Set([4222, 6222, 8222]);
/** Where Debian installs the binary, which is often not on a user's PATH. */
const FALLBACK_BINARY_DIRS = ['/usr/sbin', '/usr/local/sbin', '/usr/local/bin', '/usr/bin'];
/** How long `nats-server --version` may take before the binary counts as broken. */
const VERSION_PROBE_TIMEOUT_MS = 10_000;

/**
 * The nats-server release the tests and the chaos runner are known to work with;
 * tests/helpers/ensure-nats-server.sh builds it with Go into {@link pinnedNatsServerPath}.
 * Debian's 2.9.10 is not enough: its restarted cluster replicas silently drop acked
 * messages (nats-io/nats-server#4196).
 *
 * @example
 * `go install github.com/nats-io/nats-server/v2@${PINNED_NATS_SERVER_VERSION}`
 */
export const PINNED_NATS_SERVER_VERSION = 'v2.15.2';

/**
 * Where tests/helpers/ensure-nats-server.sh keeps its build of the pinned release:
 * `${TRIBUTARY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tributary}/nats-server-v2.15.2/nats-server`,
 * the same rule as the script, read from the environment at each call so that the
 * two always agree.
 *
 * @example
 * pinnedNatsServerPath() // '/root/.cache/tributary/nats-server-v2.15.2/nats-server'
 */
export function pinnedNatsServerPath(): string {
  // `||`, not `??`: the script's `${VAR:-default}` treats an empty variable as unset.
  const cacheRoot =
    process.env.TRIBUTARY_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'tributary');
  return path.join(cacheRoot, `nats-server-${PINNED_NATS_SERVER_VERSION}`, 'nats-server');
}

/** Why a server could not be started; `code` is stable for tests to match. */
export class NatsServerError extends Error {
  override readonly name = 'NatsServerError';
  readonly code: 'nats-server.missing' | 'nats-server.no-version' | 'nats-server.exited' | 'nats-server.not-ready';

  constructor(code: NatsServerError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Options of {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Enables JetStream with a temporary store directory (default true). */
  readonly jetstream?: boolean;
  /** Largest message the server accepts, in bytes (the server's default is 1 MB). */
  readonly maxPayload?: number;
  /** The server's `server_name`; also names its temporary directory. */
  readonly name?: string;
  /** Lines added to the server's configuration as they are (an authorization or a tls block). */
  readonly extraConfig?: string;
  /**
   * Path of the nats-server binary. Without it: $TRIBUTARY_NATS_SERVER, else the
   * pinned build ({@link pinnedNatsServerPath}), else PATH, else /usr/sbin and the like.
   */
  readonly binary?: string;
}

/** A running (or stopped) nats-server started by {@link startNatsServer}. */
export interface NatsServer {
  /** `server_name`, as JetStream reports it in stream cluster info. */
  readonly name: string;
  /** Client URL, `nats://127.0.0.1:<port>`; unchanged by restart(). */
  readonly url: string;
  /** Client port; unchanged by restart(). */
  readonly port: number;
  /** JetStream store directory; restart() reuses it. */
  readonly storeDir: string;
  /**
   * Version the binary reports, without the `v` (e.g. '2.15.2'). Nothing refuses an
   * old one here, so that tests can start a 2.9 server on purpose and check it.
   */
  readonly version: string;
  /** Pid of the current process (a new one after restart()). */
  readonly pid: number;
  /** Monitoring URL of the current process (its port changes on restart()). */
  readonly monitoringUrl: string;
  /** True between a successful start and stop(). */
  readonly running: boolean;
  /** Kills the process with SIGKILL (a crash, nothing flushed) and waits until it exited. */
  stop(): Promise<void>;
  /** Stops the server if it runs, then starts it again on the same port and store directory. */
  restart(): Promise<void>;
  /** Stops the server and removes its temporary directory. */
  shutdown(): Promise<void>;
}

/** A JetStream cluster started by {@link startNatsCluster}. */
export interface NatsCluster {
  readonly servers: readonly NatsServer[];
  /** Client URLs of all servers, for {@link connectTo}. */
  readonly urls: string[];
  /** Version of the servers' binary (they share one), as {@link NatsServer.version}. */
  readonly version: string;
  /** Kills server `i` (SIGKILL). */
  stop(i: number): Promise<void>;
  /** Starts server `i` again with its ports and store directory. */
  restart(i: number): Promise<void>;
  /** Stops every server and removes their directories. */
  shutdown(): Promise<void>;
}

/** Children still running and directories not yet removed, for the exit safety net. */
const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let safetyNetInstalled = false;

/**
 * Kills leftover servers and removes their directories when the test process ends,
 * even if a test forgot its teardown or failed before it: a leaked nats-server
 * would hold its ports and keep the ava run from ending.
 */
function installSafetyNet(): void {
  if (safetyNetInstalled) return;
  safetyNetInstalled = true;
  const cleanUp = (): void => {
    for (const child of liveChildren) child.kill('SIGKILL');
    liveChildren.clear();
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
    liveDirs.clear();
  };
  process.once('exit', cleanUp);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = (): void => {
      cleanUp();
      // Re-raise so the default behaviour (terminate) still happens when nobody else listens.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.once(signal, onSignal);
  }
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await fs.access(file, fsConstants.X_OK);
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

/** What a missing-binary error tells the user to do. */
function missingHint(): string {
  return (
    `run \`bash tests/helpers/ensure-nats-server.sh\` in a Tributary checkout (it builds nats-server ${PINNED_NATS_SERVER_VERSION} ` +
    `with Go into ${path.dirname(pinnedNatsServerPath())}), or \`go install github.com/nats-io/nats-server/v2@${PINNED_NATS_SERVER_VERSION}\` ` +
    'and put it on PATH, or set TRIBUTARY_NATS_SERVER to a nats-server 2.10 or newer'
  );
}

/**
 * Finds the binary: the override if given, else $TRIBUTARY_NATS_SERVER, else the
 * pinned build of ensure-nats-server.sh, else PATH, else the usual sbin/bin
 * directories. The pinned build comes before PATH because PATH often holds Debian's
 * 2.9.10, whose cluster bug (nats-io/nats-server#4196) the cluster tests would hit.
 */
async function resolveBinary(override: string | undefined): Promise<string> {
  const named: [string, string | undefined][] = [
    ['the binary option', override],
    ['TRIBUTARY_NATS_SERVER', process.env.TRIBUTARY_NATS_SERVER || undefined],
  ];
  for (const [source, file] of named) {
    if (file === undefined) continue;
    if (await isExecutable(file)) return file;
    throw new NatsServerError(
      'nats-server.missing',
      `nats-server binary not found: ${file} (from ${source}) does not exist or is not executable; ${missingHint()}`,
    );
  }
  const pinned = pinnedNatsServerPath();
  if (await isExecutable(pinned)) return pinned;
  const pathDirs = (process.env.PATH ?? '').split(path.delimiter).filter((dir) => dir !== '');
  for (const dir of [...pathDirs, ...FALLBACK_BINARY_DIRS]) {
    const candidate = path.join(dir, 'nats-server');
    if (await isExecutable(candidate)) return candidate;
  }
  throw new NatsServerError(
    'nats-server.missing',
    `nats-server binary not found at ${pinned}, on PATH or in ${FALLBACK_BINARY_DIRS.join(', ')}; ${missingHint()}`,
  );
}

/** Versions already read, by binary path: each binary is asked once per process. */
const versionsByBinary = new Map<string, Promise<string>>();

/** The version `binary --version` prints (`nats-server: v2.15.2` gives '2.15.2'), read once per path. */
function binaryVersion(binary: string): Promise<string> {
  const known = versionsByBinary.get(binary);
  if (known !== undefined) return known;
  const reading = readBinaryVersion(binary);
  versionsByBinary.set(binary, reading);
  // A failed read is not kept: the next start may find the binary repaired.
  reading.catch(() => {
    if (versionsByBinary.get(binary) === reading) versionsByBinary.delete(binary);
  });
  return reading;
}

/** Runs `binary --version`; a binary that prints no nats-server version is refused, as it is not one. */
function readBinaryVersion(binary: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, ['--version'], { timeout: VERSION_PROBE_TIMEOUT_MS }, (err, stdout, stderr) => {
      const match = /^nats-server: v?(\d+\.\d+\.\d+\S*)/m.exec(`${stdout}\n${stderr}`);
      if (match?.[1] !== undefined) {
        resolve(match[1]);
        return;
      }
      const output = `${stdout}${stderr}`.trim().slice(0, STDERR_TAIL_BYTES_MAX);
      reject(
        new NatsServerError(
          'nats-server.no-version',
          `${binary} --version printed no nats-server version${err ? ` (${err.message})` : ''}: ${JSON.stringify(output)}`,
          { cause: err ?? undefined },
        ),
      );
    });
  });
}

/** Quotes a string for the NATS config format (its double-quoted strings follow JSON). */
const q = (value: string): string => JSON.stringify(value);

/** Cluster settings of one member, written into its config by {@link startNatsCluster}. */
interface ClusterMember {
  readonly clusterName: string;
  readonly routePort: number;
  readonly routePorts: readonly number[];
}

interface ServerSpec {
  readonly name: string;
  readonly jetstream: boolean;
  readonly maxPayload: number | undefined;
  readonly cluster: ClusterMember | undefined;
  readonly extraConfig?: string | undefined;
}

function renderConfig(spec: ServerSpec, port: number, dir: string, storeDir: string): string {
  const lines = [
    `server_name: ${q(spec.name)}`,
    // -1 lets the kernel pick the port the first time; restart() writes the known one.
    `listen: ${q(`127.0.0.1:${port}`)}`,
    `http: ${q('127.0.0.1:-1')}`,
    `ports_file_dir: ${q(dir)}`,
  ];
  if (spec.maxPayload !== undefined) lines.push(`max_payload: ${spec.maxPayload}`);
  if (spec.jetstream) lines.push(`jetstream {`, `  store_dir: ${q(storeDir)}`, `}`);
  if (spec.extraConfig) lines.push(spec.extraConfig);
  if (spec.cluster !== undefined) {
    const routes = spec.cluster.routePorts.map((p) => q(`nats-route://127.0.0.1:${p}`));
    lines.push(
      `cluster {`,
      `  name: ${q(spec.cluster.clusterName)}`,
      `  listen: ${q(`127.0.0.1:${spec.cluster.routePort}`)}`,
      `  routes: [${routes.join(', ')}]`,
      `}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

interface PortsFile {
  nats?: string[];
  monitoring?: string[];
}

/** Reads the ports file the server `pid` wrote into `dir`, or undefined if it is not (fully) there yet. */
async function readPortsFile(dir: string, pid: number): Promise<PortsFile | undefined> {
  const entry = (await fs.readdir(dir)).find((name) => name.endsWith(`_${pid}.ports`));
  if (entry === undefined) return undefined;
  try {
    return JSON.parse(await fs.readFile(path.join(dir, entry), 'utf8')) as PortsFile;
  } catch {
    return undefined; // Written but not complete yet: read it again at the next poll.
  }
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves true once a TCP connection to 127.0.0.1:port succeeds, false on refusal. */
function probePort(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** One nats-server: its directory and config stay, its process comes and goes. */
class ServerProcess implements NatsServer {
  readonly name: string;
  readonly storeDir: string;
  readonly version: string;
  readonly #spec: ServerSpec;
  readonly #dir: string;
  readonly #binary: string;
  #port = -1;
  #monitoringUrl = '';
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #stderrTail = '';

  constructor(spec: ServerSpec, dir: string, binary: string, version: string) {
    this.name = spec.name;
    this.version = version;
    this.#spec = spec;
    this.#dir = dir;
    this.#binary = binary;
    this.storeDir = path.join(dir, 'jetstream');
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get port(): number {
    return this.#port;
  }

  get pid(): number {
    return this.#child?.pid ?? -1;
  }

  get monitoringUrl(): string {
    return this.#monitoringUrl;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Writes the config, spawns the server and waits until its client port accepts connections. */
  async start(): Promise<void> {
    const conf = path.join(this.#dir, 'server.conf');
    await fs.writeFile(conf, renderConfig(this.#spec, this.#port, this.#dir, this.storeDir));
    const child = spawn(this.#binary, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#stderrTail = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderrTail = (this.#stderrTail + chunk.toString()).slice(-STDERR_TAIL_BYTES_MAX);
    });
    let exitedEarly: string | undefined;
    this.#exited = new Promise((resolve) => {
      child.once('error', (err) => {
        exitedEarly = `spawn failed: ${err.message}`;
        liveChildren.delete(child);
        resolve();
      });
      child.once('exit', (code, signal) => {
        exitedEarly = `exited with ${signal ?? `code ${code}`}`;
        liveChildren.delete(child);
        resolve();
      });
    });
    liveChildren.add(child);
    this.#child = child;
    try {
      await this.#waitUntilReady(child, () => exitedEarly);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  async #waitUntilReady(child: ChildProcess, exitReason: () => string | undefined): Promise<void> {
    const deadline = Date.now() + SERVER_READY_TIMEOUT_MS;
    const failIfExited = (): void => {
      const reason = exitReason();
      if (reason !== undefined) {
        throw new NatsServerError(
          'nats-server.exited',
          `${this.#binary} (${this.name}) ${reason} before it was ready; stderr tail:\n${this.#stderrTail}`,
        );
      }
    };
    // Polling the file is how an external process's readiness is learnt here; it is not test synchronisation.
    let clientUrl: string | undefined;
    for (;;) {
      const ports = await readPortsFile(this.#dir, child.pid ?? -1);
      clientUrl = ports?.nats?.[0];
      if (clientUrl !== undefined) {
        this.#monitoringUrl = ports?.monitoring?.[0] ?? '';
        break;
      }
      failIfExited();
      if (Date.now() > deadline) throw this.#notReady('wrote no ports file');
      await pause(PORTS_FILE_POLL_MS);
    }
    const clientPort = Number(new URL(clientUrl).port);
    if (this.#port !== -1 && clientPort !== this.#port) throw this.#notReady(`listens on ${clientPort}, not ${this.#port}`);
    this.#port = clientPort;
    while (!(await probePort(clientPort))) {
      failIfExited();
      if (Date.now() > deadline) throw this.#notReady(`does not accept connections on ${clientPort}`);
      await pause(PORTS_FILE_POLL_MS);
    }
  }

  #notReady(what: string): NatsServerError {
    return new NatsServerError(
      'nats-server.not-ready',
      `${this.#binary} (${this.name}) ${what} within ${SERVER_READY_TIMEOUT_MS} ms; stderr tail:\n${this.#stderrTail}`,
    );
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    this.#child = undefined;
    child.kill('SIGKILL');
    await this.#exited;
    // A killed server leaves its ports file behind; the next start looks for its own pid's file anyway.
    await fs.rm(path.join(this.#dir, `${path.basename(this.#binary)}_${child.pid}.ports`), { force: true });
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async shutdown(): Promise<void> {
    await this.stop();
    await fs.rm(this.#dir, { recursive: true, force: true });
    liveDirs.delete(this.#dir);
  }
}

async function launch(spec: ServerSpec, binaryOverride: string | undefined): Promise<ServerProcess> {
  installSafetyNet();
  const binary = await resolveBinary(binaryOverride);
  const version = await binaryVersion(binary);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `tributary-nats-${spec.name}-`));
  liveDirs.add(dir);
  const server = new ServerProcess(spec, dir, binary, version);
  try {
    await server.start();
  } catch (err) {
    await server.shutdown();
    throw err;
  }
  return server;
}

let serverCount = 0;

/**
 * Starts one nats-server on 127.0.0.1 with a random client port and, unless
 * disabled, JetStream in a temporary store directory.
 *
 * @example
 * const server = await startNatsServer();
 * const nc = await connectTo([server.url]);
 * // ... the test ...
 * await nc.close();
 * await server.shutdown();
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const spec: ServerSpec = {
    name: options.name ?? `s${process.pid}-${++serverCount}`,
    jetstream: options.jetstream ?? true,
    maxPayload: options.maxPayload,
    extraConfig: options.extraConfig,
    cluster: undefined,
  };
  return launch(spec, options.binary);
}

/** Options of {@link startNatsCluster}. */
export interface NatsClusterOptions {
  /** Cluster name; the servers are named `<name>-0`, `<name>-1`, ... */
  readonly name?: string;
  /** Path of the nats-server binary, as for {@link startNatsServer}. */
  readonly binary?: string;
}

/**
 * Picks `count` distinct free ports on 127.0.0.1 by binding to port 0 and closing
 * again. All are held open together so that they differ; the well-known NATS ports
 * are skipped.
 */
export async function pickFreePorts(count: number): Promise<number[]> {
  const held: net.Server[] = [];
  const ports: number[] = [];
  try {
    while (ports.length < count) {
      const server = net.createServer();
      held.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      const port = (server.address() as net.AddressInfo).port;
      if (!RESERVED_PORTS.has(port)) ports.push(port);
    }
  } finally {
    await Promise.all(held.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
  return ports;
}

/** Resolves once JetStream answers an account info request through any of `urls`. */
async function waitForJetStream(urls: string[]): Promise<void> {
  const nc = await connectTo(urls);
  try {
    const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 2_000 });
    const deadline = Date.now() + CLUSTER_READY_TIMEOUT_MS;
    for (;;) {
      try {
        await jsm.getAccountInfo();
        return;
      } catch (err) {
        // Until the meta leader is elected the API answers "temporarily unavailable" or nobody answers.
        if (Date.now() > deadline) {
          throw new NatsServerError(
            'nats-server.not-ready',
            `JetStream of the cluster at ${urls.join(', ')} was not ready within ${CLUSTER_READY_TIMEOUT_MS} ms`,
            {
              cause: err,
            },
          );
        }
        await pause(CLUSTER_READY_POLL_MS);
      }
    }
  } finally {
    await nc.close();
  }
}

let clusterCount = 0;

/**
 * Starts a JetStream cluster of `size` servers routed to each other on loopback
 * and resolves once its JetStream API answers (the meta leader is elected).
 *
 * @example
 * const cluster = await startNatsCluster(3);
 * const nc = await connectTo(cluster.urls);
 * await cluster.stop(0); // a crash: the others elect new leaders
 * await cluster.restart(0);
 * await cluster.shutdown();
 */
export async function startNatsCluster(size = 3, options: NatsClusterOptions = {}): Promise<NatsCluster> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`cluster size must be a positive integer, got ${size}`);
  const clusterName = options.name ?? `c${process.pid}-${++clusterCount}`;
  // Routes name every member's port, so the route ports must be known before any server starts.
  const routePorts = await pickFreePorts(size);
  const started = await Promise.allSettled(
    routePorts.map((routePort, i) =>
      launch(
        { name: `${clusterName}-${i}`, jetstream: true, maxPayload: undefined, cluster: { clusterName, routePort, routePorts } },
        options.binary,
      ),
    ),
  );
  const servers = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failure = started.find((result) => result.status === 'rejected');
  const shutdown = async (): Promise<void> => {
    await Promise.all(servers.map((server) => server.shutdown()));
  };
  if (failure !== undefined) {
    await shutdown();
    throw failure.reason;
  }
  const urls = servers.map((server) => server.url);
  try {
    await waitForJetStream(urls);
  } catch (err) {
    await shutdown();
    throw err;
  }
  const at = (i: number): ServerProcess => {
    const server = servers[i];
    if (server === undefined) throw new RangeError(`no server ${i} in a cluster of ${size}`);
    return server;
  };
  return {
    servers,
    urls,
    // Every member was started from the same resolved binary, so the first one speaks for all.
    version: at(0).version,
    stop: (i) => at(i).stop(),
    restart: (i) => at(i).restart(),
    shutdown,
  };
}

/**
 * Connects to any of `urls` with options fit for tests that kill servers: the
 * client reconnects forever, 100 ms apart, so it survives stop()/restart().
 *
 * @example
 * const nc = await connectTo(cluster.urls);
 */
export function connectTo(urls: string | string[]): Promise<NatsConnection> {
  return connect({
    servers: urls,
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
    name: 'tributary-test',
  });
}
