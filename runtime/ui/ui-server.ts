/**
 * The web UI's HTTP server (node:http): the page and its assets, the monitor's
 * changes as server-sent events on `/events`, the whole model as JSON on
 * `/api/state`, and Prometheus's text format on `/metrics`. It listens on loopback
 * unless told otherwise and is stopped with its context, open event streams
 * included.
 */
import { promises as fs } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { Logger } from '../base/logger.ts';
import { reasonOf } from '../base/logger.ts';
import type { AppMonitor, MonitorEvent } from './app-monitor.ts';
import { PAGE_CSS, PAGE_HTML, PAGE_SCRIPT } from './page.ts';
import type { PrometheusMetrics } from './prometheus-metrics.ts';
import { type UiAddress, uiUrl } from './ui-address.ts';

/** uPlot's files the page loads, from the installed package (no CDN: the UI must work offline). */
const VENDOR_FILES: Readonly<Record<string, { readonly file: string; readonly type: string }>> = {
  '/vendor/uPlot.iife.min.js': { file: 'dist/uPlot.iife.min.js', type: 'text/javascript; charset=utf-8' },
  '/vendor/uPlot.min.css': { file: 'dist/uPlot.min.css', type: 'text/css; charset=utf-8' },
};

/** Event streams open at once; more are refused (503) rather than let a reloading tab leak memory. */
const EVENT_STREAMS_MAX = 64;

/** Only same-origin scripts and styles; uPlot sets element styles, not inline `<style>`. */
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
} as const;

/** A running UI server. */
export interface UiServer {
  /** The bound address (the real port when 0 was asked for). */
  readonly address: UiAddress;
  /** `http://host:port/`. */
  readonly url: string;
  /** Stops listening and ends every open event stream. */
  close(): Promise<void>;
}

/** What the server serves. */
export interface UiServerOptions {
  readonly address: UiAddress;
  readonly monitor: AppMonitor;
  readonly metrics: PrometheusMetrics;
  readonly logger: Logger;
}

/**
 * Starts the server; rejects when the address cannot be bound (in use, not local).
 *
 * @example
 * const ui = await startUiServer({ address: { host: '127.0.0.1', port: 4040 }, monitor, metrics, logger });
 * await ui.close();
 */
export async function startUiServer(options: UiServerOptions): Promise<UiServer> {
  const streams = new Set<ServerResponse>();
  const vendor = new Map<string, Buffer>();
  const server = createServer((req, res) => {
    handle(req, res, options, streams, vendor).catch((error: unknown) => {
      options.logger.warn({ reason: reasonOf(error), url: req.url }, 'web UI request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('internal error\n');
    });
  });
  await listen(server, options.address);
  const bound = server.address() as AddressInfo;
  const address = { host: options.address.host, port: bound.port };
  let closing: Promise<void> | undefined;
  return {
    address,
    url: uiUrl(address),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const res of streams) res.end();
        streams.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function listen(server: Server, address: UiAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (error: Error) => reject(error);
    server.once('error', failed);
    server.listen(address.port, address.host, () => {
      server.off('error', failed);
      resolve();
    });
  });
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  options: UiServerOptions,
  streams: Set<ServerResponse>,
  vendor: Map<string, Buffer>,
): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    res.end('method not allowed\n');
    return;
  }
  const pathname = new URL(req.url ?? '/', 'http://ui.invalid').pathname;
  switch (pathname) {
    case '/':
    case '/index.html':
      return send(res, 200, 'text/html; charset=utf-8', PAGE_HTML);
    case '/app.js':
      return send(res, 200, 'text/javascript; charset=utf-8', PAGE_SCRIPT);
    case '/app.css':
      return send(res, 200, 'text/css; charset=utf-8', PAGE_CSS);
    case '/api/state':
      return send(res, 200, 'application/json; charset=utf-8', JSON.stringify(options.monitor.snapshot()));
    case '/metrics':
      return send(res, 200, options.metrics.contentType, await options.metrics.text());
    case '/events':
      return openEvents(req, res, options.monitor, streams);
    default: {
      const asset = VENDOR_FILES[pathname];
      if (asset === undefined) return send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
      let body = vendor.get(pathname);
      if (body === undefined) {
        body = await fs.readFile(path.join(uplotDir(), asset.file));
        vendor.set(pathname, body);
      }
      return send(res, 200, asset.type, body);
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** A server-sent event stream: the whole model first, then every change as it happens. */
function openEvents(req: IncomingMessage, res: ServerResponse, monitor: AppMonitor, streams: Set<ServerResponse>): void {
  if (streams.size >= EVENT_STREAMS_MAX) {
    send(res, 503, 'text/plain; charset=utf-8', `at most ${EVENT_STREAMS_MAX} open event streams\n`);
    return;
  }
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
  res.flushHeaders();
  streams.add(res);
  const write = (event: MonitorEvent) => {
    res.write(`data: ${JSON.stringify(event)}\n\n`);
  };
  res.write('retry: 2000\n\n');
  write({ type: 'snapshot', snapshot: monitor.snapshot() });
  const unsubscribe = monitor.subscribe(write);
  const done = () => {
    unsubscribe();
    streams.delete(res);
  };
  req.on('close', done);
  res.on('close', done);
}

/** The installed uPlot package's folder, found the way Node resolves it from this file. */
function uplotDir(): string {
  return path.dirname(createRequire(import.meta.url).resolve('uplot/package.json'));
}
