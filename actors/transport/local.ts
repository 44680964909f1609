/**
 * The in-process transport: endpoints of one hub hand messages to each other by
 * reference, in order, on the microtask queue. It is what every single-process run
 * uses, so the scheduler and the worker code paths are the ones a cluster runs.
 */
import { InvalidStateError } from '../../runtime/base/errors.ts';
import type { ClusterMessage, MessageHandler, Transport } from './transport.ts';

/**
 * A set of endpoints in one process.
 *
 * @example
 * const hub = new LocalHub();
 * const driver = hub.endpoint('driver');
 * const worker = hub.endpoint('local');
 */
export class LocalHub {
  readonly #handlers = new Map<string, MessageHandler>();
  readonly #pending = new Map<string, { from: string; message: ClusterMessage }[]>();
  #closed = false;

  /** The transport of endpoint `name`. */
  endpoint(name: string): Transport {
    return {
      self: name,
      local: true,
      send: (to, message) => this.#deliver(name, to, message),
      onMessage: (handler) => this.#register(name, handler),
      // Nothing waits in the local transport: a send is delivered at once.
      reset: () => {},
      close: async () => {
        this.#handlers.delete(name);
      },
    };
  }

  /** Drops every endpoint: later sends fail, nothing more is delivered. */
  close(): void {
    this.#closed = true;
    this.#handlers.clear();
    this.#pending.clear();
  }

  #register(name: string, handler: MessageHandler): void {
    this.#handlers.set(name, handler);
    const waiting = this.#pending.get(name) ?? [];
    this.#pending.delete(name);
    for (const { from, message } of waiting) queueMicrotask(() => handler(from, message));
  }

  #deliver(from: string, to: string, message: ClusterMessage): Promise<void> {
    if (this.#closed) return Promise.reject(new InvalidStateError(`the local transport is closed (sending ${message.type} to ${to})`));
    const handler = this.#handlers.get(to);
    if (handler === undefined) {
      const queue = this.#pending.get(to) ?? [];
      queue.push({ from, message });
      this.#pending.set(to, queue);
    } else {
      queueMicrotask(() => handler(from, message));
    }
    return Promise.resolve();
  }
}
