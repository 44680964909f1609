/**
 * The engine inside a plain Node HTTP service: the service starts its own nact actor
 * system, hosts a streaming job in it, feeds it from `POST /lines` and answers
 * `GET /counts/:word` from the live state of an updateStateByKey operator
 * (consistent as of the last completed batch).
 *
 *   npx tsx demos/embedded-app.ts [port] [checkpointDir]
 *   curl -d 'to be or not to be' http://127.0.0.1:8080/lines
 *   curl http://127.0.0.1:8080/counts/be
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Receiver, StreamingContext, seconds, startActorSystem } from '../runtime/api/index.ts';

/** Lines posted over HTTP, handed to the stream. */
class PostedLines extends Receiver<string> {
  onStart(): void {}
  onStop(): void {}
  push(text: string): number {
    const lines = text.split('\n').filter((l) => l.length > 0);
    this.storeAll(lines);
    return lines.length;
  }
}

/** A running embedded app. */
export interface EmbeddedApp {
  readonly url: string;
  readonly ssc: StreamingContext;
  close(): Promise<void>;
}

/**
 * Starts the service on 127.0.0.1:`port` (0: any free port).
 *
 * @example
 * const app = await startEmbeddedApp({ port: 0, batchDurationMs: 200 });
 */
export async function startEmbeddedApp(
  options: { port?: number; checkpoint?: string; batchDurationMs?: number } = {},
): Promise<EmbeddedApp> {
  const actorSystem = startActorSystem('embedded-app');
  const lines = new PostedLines();
  const build = () => {
    const ssc = new StreamingContext({ appName: 'embedded-app', batchDuration: options.batchDurationMs ?? seconds(1), actorSystem });
    ssc
      .receiverStream(lines)
      .flatMap((l) => l.split(/\s+/).filter((w) => w.length > 0))
      .map((w) => [w, 1] as [string, number])
      .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.reduce((a, b) => a + b, 0))
      .uid('counts')
      .foreachBatch(() => {});
    return ssc;
  };
  const ssc = options.checkpoint ? await StreamingContext.getOrCreate(options.checkpoint, build) : build();
  await ssc.start();
  const counts = ssc.state<string, number>('counts');
  const server = http.createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const match = /^\/counts\/([^/]+)$/.exec(req.url ?? '');
    if (req.method === 'GET' && match) {
      const word = decodeURIComponent(match[1] as string);
      counts.get(word).then(
        (n) => reply(200, { word, count: n ?? 0 }),
        (error: Error) => reply(503, { error: error.message }),
      );
    } else if (req.method === 'POST' && req.url === '/lines') {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => {
        body += chunk;
      });
      req.on('end', () => reply(202, { accepted: lines.push(body) }));
    } else {
      reply(404, { error: 'try POST /lines or GET /counts/:word' });
    }
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 8080, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    ssc,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await ssc.stop();
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const app = await startEmbeddedApp({
    port: Number(process.argv[2] ?? 8080),
    ...(process.argv[3] ? { checkpoint: process.argv[3] } : {}),
  });
  process.stdout.write(`embedded app on ${app.url} (POST /lines, GET /counts/:word)\n`);
  const stop = () => void app.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
