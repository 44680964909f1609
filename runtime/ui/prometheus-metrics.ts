/**
 * The app's figures in Prometheus's text format (served at `/metrics` beside the
 * web UI), kept with prom-client, the client library most Node.js services use.
 * Each context has a registry of its own, so two contexts in one process do not
 * mix their samples, and every sample carries the `app` label.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { assertNever } from '../base/assert.ts';
import type { MonitorEvent } from './app-monitor.ts';

/** Seconds: from a fast in-process batch (ms) to a slow cluster one (a minute). */
const DURATION_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The metrics of one app, fed by the monitor's events.
 *
 * @example
 * const metrics = new PrometheusMetrics('wc');
 * monitor.subscribe((event) => metrics.apply(event));
 * const text = await metrics.text();
 */
export class PrometheusMetrics {
  readonly registry = new Registry();
  readonly #batches: Counter;
  readonly #records: Counter;
  readonly #processing: Histogram;
  readonly #scheduling: Histogram;
  readonly #totalDelay: Histogram;
  readonly #queued: Gauge;
  readonly #received: Counter<'stream'>;
  readonly #accepted: Counter<'stream'>;
  readonly #stateKeys: Gauge<'operator'>;
  readonly #stateBytes: Gauge<'operator'>;
  readonly #checkpointDuration: Histogram;
  readonly #checkpointBytes: Gauge;
  readonly #deadLetters: Counter;
  readonly #recoveries: Counter<'kind'>;
  readonly #workerSlots: Gauge<'worker'>;

  constructor(appName: string) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ app: appName });
    this.#batches = new Counter({ name: 'tributary_batches_completed_total', help: 'Batches completed.', registers });
    this.#records = new Counter({ name: 'tributary_records_processed_total', help: 'Input records of completed batches.', registers });
    this.#processing = new Histogram({
      name: 'tributary_batch_processing_seconds',
      help: 'How long each batch took to run, outputs and state commit included.',
      buckets: DURATION_BUCKETS_S,
      registers,
    });
    this.#scheduling = new Histogram({
      name: 'tributary_scheduling_delay_seconds',
      help: 'How long each batch waited behind earlier ones before it ran.',
      buckets: DURATION_BUCKETS_S,
      registers,
    });
    this.#totalDelay = new Histogram({
      name: 'tributary_batch_total_delay_seconds',
      help: 'Scheduling delay plus processing time of each batch.',
      buckets: DURATION_BUCKETS_S,
      registers,
    });
    this.#queued = new Gauge({ name: 'tributary_queued_batches', help: 'Batches waiting when the last one completed.', registers });
    this.#received = new Counter({
      name: 'tributary_records_received_total',
      help: 'Records each input stream fed into completed batches.',
      labelNames: ['stream'],
      registers,
    });
    this.#accepted = new Counter({
      name: 'tributary_receiver_records_accepted_total',
      help: 'Records each receiver accepted and wrote ahead, before a batch took them.',
      labelNames: ['stream'],
      registers,
    });
    this.#stateKeys = new Gauge({
      name: 'tributary_state_keys',
      help: 'Keys a stateful operator holds after the last completed batch, all partitions.',
      labelNames: ['operator'],
      registers,
    });
    this.#stateBytes = new Gauge({
      name: 'tributary_state_snapshot_bytes',
      help: "Bytes of a stateful operator's last full snapshot, all partitions.",
      labelNames: ['operator'],
      registers,
    });
    this.#checkpointDuration = new Histogram({
      name: 'tributary_checkpoint_duration_seconds',
      help: 'From capturing the state to the checkpoint journaled (snapshots written and read back).',
      buckets: DURATION_BUCKETS_S,
      registers,
    });
    this.#checkpointBytes = new Gauge({
      name: 'tributary_checkpoint_bytes',
      help: 'Snapshot bytes written by the last checkpoint.',
      registers,
    });
    this.#deadLetters = new Counter({ name: 'tributary_dead_letters_total', help: 'Records set aside as dead letters.', registers });
    this.#recoveries = new Counter({
      name: 'tributary_recoveries_total',
      help: 'Recoveries: from a checkpoint at start (restart), after lost workers (failover), after a stall.',
      labelNames: ['kind'],
      registers,
    });
    this.#workerSlots = new Gauge({
      name: 'tributary_worker_partitions',
      help: 'Partition slots each cluster worker owns.',
      labelNames: ['worker'],
      registers,
    });
  }

  /** Applies one change of the monitor. */
  apply(event: MonitorEvent): void {
    switch (event.type) {
      case 'snapshot':
      case 'status':
        return;
      case 'batch.completed': {
        const b = event.batch;
        this.#batches.inc();
        this.#records.inc(b.records);
        this.#processing.observe(b.processingMs / 1000);
        this.#scheduling.observe(b.schedulingDelayMs / 1000);
        this.#totalDelay.observe(b.totalDelayMs / 1000);
        this.#queued.set(b.queuedBatches);
        for (const [stream, n] of Object.entries(event.inputRecords)) this.#received.inc({ stream }, n);
        for (const o of event.operators) if (o.keys !== null) this.#stateKeys.set({ operator: o.operator }, o.keys);
        return;
      }
      case 'checkpoint.completed':
        this.#checkpointDuration.observe(event.checkpoint.durationMs / 1000);
        this.#checkpointBytes.set(event.checkpoint.bytes);
        for (const o of event.operators) if (o.stateBytes !== null) this.#stateBytes.set({ operator: o.operator }, o.stateBytes);
        return;
      case 'records.accepted':
        this.#accepted.inc({ stream: event.stream }, event.records);
        return;
      case 'dead-letter':
        this.#deadLetters.inc();
        return;
      case 'recovery':
        this.#recoveries.inc({ kind: event.recovery.kind });
        return;
      case 'workers.assigned':
        this.#workerSlots.reset();
        for (const w of event.workers) this.#workerSlots.set({ worker: w.id }, w.slots.length);
        return;
      default:
        assertNever(event);
    }
  }

  /** Starts the labelled counters at zero, so that they show (and rates work) before the first event. */
  seed(inputs: readonly string[]): void {
    for (const stream of inputs) this.#received.inc({ stream }, 0);
    for (const kind of ['restart', 'failover', 'stall']) this.#recoveries.inc({ kind }, 0);
  }

  /** The exposition text. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The exposition's content type. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
