/**
 * The web UI in a real browser: Debian's headless Chromium driven by playwright-core
 * opens the page of an app on the ManualClock before its first batch, then the
 * batches run one at a time and the page must follow over server-sent events
 * (without reloading): its numbers must equal the engine's (listeners, and the
 * data's own counts), the four uPlot charts must have drawn their series in their
 * colours, no console error may appear, and the page must show the stop. A
 * screenshot is saved in the test's temp dir (and to docs/ui.png with
 * TRIBUTARY_UPDATE_SCREENSHOT=1). Chromium missing is a failure naming the fix, not
 * a skip: `.ci/run` installs it.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import anyTest, { type TestFn } from 'ava';
import { type Browser, chromium, type Page } from 'playwright-core';
import type { BatchInfo } from '../../../actors/driver.ts';
import { StreamingContext } from '../../../runtime/api/index.ts';
import { ManualClock } from '../../../runtime/api/testing.ts';
import { capturedLogger, TempDirs } from '../../helpers/checkpoint-kit.ts';

interface Ctx {
  dirs: TempDirs;
  browser: Browser | undefined;
  contexts: StreamingContext[];
}

const test = anyTest as TestFn<Ctx>;

const CHROMIUM = '/usr/bin/chromium';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BATCH_MS = 1000;
const LINES = [['a b', 'a'], ['b c', 'bad'], ['d e f'], ['a'], ['g h', 'i j k', 'a b']];
/** Distinct words but the poison one. */
const KEYS = 11;
/** The series colours of the page's charts (runtime/ui/page.ts), as RGB. */
const CHART_COLOURS: Record<string, [number, number, number]> = {
  'chart-input-rate': [0x25, 0x63, 0xeb],
  'chart-scheduling-delay': [0xd9, 0x77, 0x06],
  'chart-processing-time': [0x05, 0x96, 0x69],
  'chart-total-delay': [0x7c, 0x3a, 0xed],
};

test.before(async (t) => {
  t.context = { dirs: new TempDirs(), browser: undefined, contexts: [] };
  if (existsSync(CHROMIUM)) t.context.browser = await chromium.launch({ executablePath: CHROMIUM });
});

test.after.always(async (t) => {
  await t.context.browser?.close();
  for (const ssc of t.context.contexts) ssc.crash();
  await t.context.dirs.removeAll();
});

/** The text of an element. */
async function text(page: Page, selector: string): Promise<string> {
  return (await page.locator(selector).textContent()) ?? '';
}

/*
 * Functions evaluated in the page are anonymous arrows: the page's Content-Security-Policy
 * forbids evaluating strings, and a named function would be wrapped by tsx in a helper
 * the page does not have.
 */

/** Resolves once the page applied `n` completed batches. */
function pageBatches(page: Page, n: number): Promise<unknown> {
  return page.waitForFunction((want) => document.body.dataset.batches === String(want), n);
}

/** Resolves once the element `id` shows `value`. */
function pageShows(page: Page, id: string, value: string): Promise<unknown> {
  return page.waitForFunction(([el, want]) => document.getElementById(el as string)?.textContent === want, [id, value]);
}

const asNumber = (s: string): number => Number(s.replace(/,/g, ''));

test('web UI - the page follows the batches live, equals the engine, draws its charts, and shows the stop', async (t) => {
  const browser = t.context.browser;
  if (browser === undefined) {
    t.fail(`Chromium is missing at ${CHROMIUM}: install it with "apt-get install -y chromium" (npm test does, as root)`);
    return;
  }
  const dir = await t.context.dirs.make('ui-browser');
  const ssc = new StreamingContext({
    appName: 'browser-app',
    batchDuration: BATCH_MS,
    clock: new ManualClock(),
    logger: capturedLogger().logger,
    onRecordError: 'dead-letter',
    ui: '127.0.0.1:0',
  });
  t.context.contexts.push(ssc);
  ssc.checkpoint(dir);
  ssc
    .queueStream<string>(LINES)
    .flatMap((line) => line.split(' '))
    .map((word): [string, number] => {
      if (word === 'bad') throw new Error('a poison record');
      return [word, 1];
    })
    .updateStateByKey<string, number, number>((values, state) => (state ?? 0) + values.reduce((a, b) => a + b, 0))
    .uid('totals')
    .checkpoint(2 * BATCH_MS)
    .foreachBatch(() => {});
  const batches: BatchInfo[] = [];
  let checkpoints = 0;
  let checkpointed: () => void = () => {};
  const twoCheckpoints = new Promise<void>((resolve) => {
    checkpointed = resolve;
  });
  ssc.addStreamingListener({
    onBatchCompleted: (info) => void batches.push(info),
    onCheckpointCompleted: () => {
      if (++checkpoints === 2) checkpointed();
    },
  });
  await ssc.start();
  const url = ssc.uiAddress?.url;
  if (url === undefined) throw new Error('no UI address after start');

  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  page.on('pageerror', (error) => errors.push(error.message));
  const requested: string[] = [];
  page.on('request', (request) => requested.push(request.url()));
  await page.goto(url);
  await pageBatches(page, 0);
  t.is(await text(page, '#app-name'), 'browser-app');
  await page.evaluate(() => {
    (window as unknown as { loadedOnce: boolean }).loadedOnce = true;
  });

  for (let i = 1; i <= LINES.length; i++) {
    await ssc.runBatches(1);
    await pageBatches(page, i);
  }
  await twoCheckpoints;
  await pageShows(page, 'checkpoints-total', '2');
  t.true(
    await page.evaluate(() => (window as unknown as { loadedOnce?: boolean }).loadedOnce === true),
    'the page updated without reloading',
  );

  const last = batches.at(-1) as BatchInfo;
  t.is(batches.length, LINES.length);
  t.is(asNumber(await text(page, '#batches-completed')), batches.length);
  t.is(asNumber(await text(page, '#last-records')), last.records);
  t.is(last.records, (LINES.at(-1) as string[]).length);
  t.is(
    asNumber(await text(page, '#records-processed')),
    batches.reduce((n, b) => n + b.records, 0),
  );
  t.is(asNumber(await text(page, '#dead-letters-total')), 1);
  t.is(last.stateKeys.totals, KEYS);
  const operatorRow = await page.locator('#operators tbody tr').first().locator('td').allInnerTexts();
  t.is(operatorRow[0], 'totals');
  t.is(asNumber(operatorRow[1] as string), KEYS);
  const recordsColumn = await page.locator('#batches tbody tr td:nth-child(2)').allInnerTexts();
  t.deepEqual(recordsColumn.map(asNumber), batches.map((b) => b.records).reverse(), 'last batches, newest first');
  t.is(await page.locator('#checkpoints tbody tr').count(), 2);
  t.deepEqual(await page.locator('#checkpoints tbody tr td:nth-child(5)').allInnerTexts(), ['incremental', 'full']);
  t.deepEqual((await page.locator('#inputs tbody tr').first().locator('td').allInnerTexts()).slice(0, 2), [
    'queueStream#1',
    String(LINES.flat().length),
  ]);
  t.is(await text(page, '#workers tbody'), 'runs in one process');

  // Each chart holds every batch and has drawn its series: pixels of the series colour on its canvas.
  for (const [id, [r, g, b]] of Object.entries(CHART_COLOURS)) {
    const points = await page.evaluate(
      (chart) => (window as unknown as { tributaryCharts: Record<string, { data: number[][] }> }).tributaryCharts[chart]?.data[0]?.length,
      id,
    );
    t.is(points, LINES.length, id);
    const coloured = await page.evaluate(
      ([chart, rgb]) => {
        const canvas = document.querySelector(`#${chart as string} canvas`) as HTMLCanvasElement;
        const data = (canvas.getContext('2d') as CanvasRenderingContext2D).getImageData(0, 0, canvas.width, canvas.height).data;
        const [cr, cg, cb] = rgb as readonly number[];
        let n = 0;
        for (let i = 0; i < data.length; i += 4) {
          const near =
            Math.abs((data[i] as number) - (cr as number)) < 40 &&
            Math.abs((data[i + 1] as number) - (cg as number)) < 40 &&
            Math.abs((data[i + 2] as number) - (cb as number)) < 40;
          if ((data[i + 3] as number) > 200 && near) n++;
        }
        return n;
      },
      [id, [r, g, b]] as const,
    );
    t.true(coloured > 50, `${id}: ${coloured} pixels of its series colour`);
  }
  t.true(
    requested.every((u) => u.startsWith(url) || u.startsWith('data:')),
    `every asset from the app's server: ${requested.join(' ')}`,
  );

  const shot = path.join(dir, 'ui.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.true(existsSync(shot));
  if (process.env.TRIBUTARY_UPDATE_SCREENSHOT === '1') await page.screenshot({ path: path.join(ROOT, 'docs', 'ui.png'), fullPage: true });
  t.deepEqual(errors, [], 'no console error');

  // The stop reaches the open page before the server closes.
  await ssc.stop();
  await pageShows(page, 'status', 'stopped');
  t.is(ssc.uiAddress, undefined);
  await page.close();
});
