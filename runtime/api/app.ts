/**
 * The contract of an app module run by `tributary run <app>`: its default export
 * builds (and may start) a StreamingContext.
 */
import type { StreamingContext } from './streaming-context.ts';

/** What the runner passes to an app. */
export interface AppOptions {
  /** Arguments after the app's path on the command line. */
  readonly args: readonly string[];
}

/** An app: builds its context from the options. */
export type App = (options: AppOptions) => StreamingContext | Promise<StreamingContext>;

/**
 * Declares an app with its types checked; returns it unchanged.
 *
 * @example
 * export default defineApp(() => {
 *   const ssc = new StreamingContext({ appName: 'wc', batchDuration: seconds(1) });
 *   ssc.generatorStream({ ratePerSecond: 100 }).count().print();
 *   return ssc;
 * });
 */
export function defineApp(app: App): App {
  return app;
}
