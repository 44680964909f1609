/**
 * Backpressure: how many records per second an input may take, from how the last
 * batches went. Spark's PIDRateEstimator (proportional, integral and derivative terms
 * on the gap between the rate taken and the rate processed, the integral being the
 * scheduling delay) and its RateController (one per input, fed each completed batch).
 * Pure logic: the context feeds it batches, sources ask it for their limit.
 */

/** Gains and floor of the estimator (Spark's `spark.streaming.backpressure.pid.*`). */
export interface PidOptions {
  /** Weight of the gap between the rate taken and the rate processed (default 1). */
  readonly proportional?: number;
  /** Weight of the backlog the scheduling delay shows (default 0.2). */
  readonly integral?: number;
  /** Weight of how fast the processing rate changes (default 0). */
  readonly derivative?: number;
  /** The estimate never falls below this many records per second (default 100). */
  readonly minRate?: number;
}

/**
 * Spark's PID rate estimator.
 *
 * @example
 * const pid = new PidRateEstimator(1000);
 * pid.compute(1000, 5000, 2000, 0); // undefined: the first batch only measures
 * pid.compute(2000, 5000, 2000, 1000); // a rate below 2,500 records/s
 */
export class PidRateEstimator {
  readonly #batchMs: number;
  readonly #kp: number;
  readonly #ki: number;
  readonly #kd: number;
  readonly #minRate: number;
  #first = true;
  #latestTime = -1;
  #latestRate = -1;
  #latestError = -1;

  constructor(batchMs: number, options: PidOptions = {}) {
    this.#batchMs = batchMs;
    this.#kp = options.proportional ?? 1;
    this.#ki = options.integral ?? 0.2;
    this.#kd = options.derivative ?? 0;
    this.#minRate = options.minRate ?? 100;
  }

  /**
   * A new rate (records per second) from a completed batch, or undefined when the
   * batch says nothing (no records, no time, out of order, or the first one).
   */
  compute(time: number, records: number, processingMs: number, schedulingDelayMs: number): number | undefined {
    if (!(time > this.#latestTime && records > 0 && processingMs > 0)) return undefined;
    const sinceUpdateS = (time - this.#latestTime) / 1000;
    const processingRate = (records / processingMs) * 1000;
    const error = this.#latestRate - processingRate;
    // Records that waited: the scheduling delay at the rate they are processed, per batch.
    const historicalError = (schedulingDelayMs * processingRate) / this.#batchMs;
    const dError = (error - this.#latestError) / sinceUpdateS;
    const rate = Math.max(this.#latestRate - this.#kp * error - this.#ki * historicalError - this.#kd * dError, this.#minRate);
    this.#latestTime = time;
    if (this.#first) {
      this.#latestRate = processingRate;
      this.#latestError = 0;
      this.#first = false;
      return undefined;
    }
    this.#latestRate = rate;
    this.#latestError = error;
    return rate;
  }
}

/** What a source asks of backpressure, and tells it. */
export interface RateLimit {
  /** Records per second this input may take now; undefined: no limit. */
  perSecond(): number | undefined;
  /** This input took `records` records for the batch at `time`. */
  allocated(time: number, records: number): void;
}

/** No backpressure and no maximum. */
export const UNLIMITED: RateLimit = { perSecond: () => undefined, allocated: () => {} };

/** Backpressure settings of a context. */
export interface RateSettings {
  readonly batchMs: number;
  /** Run the estimator (Spark's `spark.streaming.backpressure.enabled`). */
  readonly backpressure: boolean;
  /** Limit before the estimator has a figure, records per second. */
  readonly initialRate?: number;
  /** Hard ceiling, records per second for the whole input (maxRatePerPartition x partitions). */
  readonly maxRate?: number;
  readonly pid?: PidOptions;
}

/**
 * One input's rate controller: remembers what the input took per batch, and updates
 * its limit when a batch completes.
 *
 * @example
 * const rc = new RateController({ batchMs: 1000, backpressure: true, initialRate: 500 });
 * rc.allocated(1000, 500);
 * rc.batchCompleted({ time: 1000, processingMs: 2000, schedulingDelayMs: 0 });
 */
export class RateController implements RateLimit {
  readonly #settings: RateSettings;
  readonly #pid: PidRateEstimator;
  readonly #taken = new Map<number, number>();
  #estimate: number | undefined;

  constructor(settings: RateSettings) {
    this.#settings = settings;
    this.#pid = new PidRateEstimator(settings.batchMs, settings.pid);
    this.#estimate = settings.backpressure ? settings.initialRate : undefined;
  }

  perSecond(): number | undefined {
    const { maxRate } = this.#settings;
    if (this.#estimate === undefined) return maxRate;
    return maxRate === undefined ? this.#estimate : Math.min(this.#estimate, maxRate);
  }

  allocated(time: number, records: number): void {
    this.#taken.set(time, records);
  }

  /** Feeds a completed batch to the estimator. */
  batchCompleted(info: { readonly time: number; readonly processingMs: number; readonly schedulingDelayMs: number }): void {
    const records = this.#taken.get(info.time) ?? 0;
    for (const t of this.#taken.keys()) if (t <= info.time) this.#taken.delete(t);
    if (!this.#settings.backpressure) return;
    const rate = this.#pid.compute(info.time, records, info.processingMs, info.schedulingDelayMs);
    if (rate !== undefined) this.#estimate = rate;
  }
}
