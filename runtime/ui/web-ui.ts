/**
 * The web UI of one running context: its monitor (registered as a streaming
 * listener), its Prometheus metrics and the HTTP server that shows both. The
 * context starts it before its first batch and stops it with itself.
 */
import type { Logger } from '../base/logger.ts';
import { type AppInfo, AppMonitor } from './app-monitor.ts';
import { PrometheusMetrics } from './prometheus-metrics.ts';
import type { UiAddress } from './ui-address.ts';
import { startUiServer } from './ui-server.ts';

/** A started web UI. */
export interface WebUi {
  /** Register it as the context's streaming listener. */
  readonly monitor: AppMonitor;
  readonly metrics: PrometheusMetrics;
  /** The bound address. */
  readonly address: UiAddress;
  readonly url: string;
  /** Tells open pages the app stopped, then closes the server. */
  stop(): Promise<void>;
}

/**
 * Starts the web UI and the `/metrics` endpoint of an app on `address`.
 *
 * @example
 * const ui = await startWebUi({ address: parseUiAddress('127.0.0.1:0'), app, now: () => clock.now(), logger });
 * ssc.addStreamingListener(ui.monitor);
 */
export async function startWebUi(options: {
  readonly address: UiAddress;
  readonly app: AppInfo;
  readonly now: () => number;
  readonly logger: Logger;
}): Promise<WebUi> {
  const monitor = new AppMonitor(options.app, options.now);
  const metrics = new PrometheusMetrics(options.app.appName);
  metrics.seed(options.app.inputs);
  monitor.subscribe((event) => metrics.apply(event));
  const server = await startUiServer({ address: options.address, monitor, metrics, logger: options.logger });
  return {
    monitor,
    metrics,
    address: server.address,
    url: server.url,
    stop: async () => {
      monitor.stopped();
      await server.close();
    },
  };
}
