/**
 * A typed facade over nact: the only module that imports it.
 *
 * nact's own typings are unsound (`Ref<T>` is empty, `start('name')` ignores the
 * name, `spawnStateless` ignores `onCrash`), so the rest of the engine speaks to
 * actors through these few functions whose types carry the message union.
 */
import { dispatch as nactDispatch, query as nactQuery, spawn as nactSpawn, start as nactStart, stop as nactStop } from 'nact';

/** A reference to an actor that accepts messages of type `M` (a phantom type). */
export interface ActorRef<M> {
  readonly __accepts?: (message: M) => void;
}

/** The root of an actor system, parent of top-level actors. */
export interface ActorSystem {
  readonly __system: true;
}

/** What a handler receives besides its state and message. */
export interface ActorContext<M> {
  readonly self: ActorRef<M>;
  readonly name: string;
}

/** A message handler: returns the next state (possibly asynchronously). */
export type Handler<S, M> = (state: S, message: M, context: ActorContext<M>) => S | Promise<S>;

type NactRef = object;

/**
 * Starts an actor system.
 *
 * @example
 * const system = startActorSystem('wc');
 */
export function startActorSystem(name?: string): ActorSystem {
  // nact ignores a bare string name: it must be passed as `{ name }`.
  const start = nactStart as unknown as (...ext: unknown[]) => NactRef;
  return (name === undefined ? start() : start({ name })) as unknown as ActorSystem;
}

/**
 * Spawns an actor under `parent` with an initial state and a handler.
 *
 * A handler that throws stops the actor (it is a programmer error: handlers in
 * this engine catch operating errors and reply with them).
 *
 * @example
 * const ref = spawnActor<number, Msg>(system, 'counter', 0, (n, msg) => n + 1);
 */
export function spawnActor<S, M>(
  parent: ActorSystem | ActorRef<never>,
  name: string,
  initialState: S,
  handler: Handler<S, M>,
): ActorRef<M> {
  const spawn = nactSpawn as unknown as (p: NactRef, f: unknown, name: string, props: object) => NactRef;
  const f = function (this: unknown, state: S, msg: M, ctx: { self: NactRef; name: string }) {
    return handler(state, msg, { self: ctx.self as ActorRef<M>, name: ctx.name });
  };
  return spawn(parent as NactRef, f, name, {
    initialState,
    onCrash: (_msg: unknown, error: unknown, ctx: { stop: unknown }) => {
      process.emitWarning(`actor ${name} stopped after an unhandled error: ${String(error)}`);
      return ctx.stop;
    },
  }) as ActorRef<M>;
}

/** Sends a message without waiting (fire and forget). */
export function dispatch<M>(ref: ActorRef<M>, message: M): void {
  (nactDispatch as unknown as (r: ActorRef<M>, m: M) => void)(ref, message);
}

/**
 * Sends a message that carries a reply address and resolves with the reply.
 *
 * `timeoutMs` is a safety net against a lost reply, not a scheduling device.
 *
 * @example
 * const result = await ask(worker, (replyTo) => ({ type: 'stage.run', replyTo, ... }), 60_000);
 */
export function ask<M, R>(ref: ActorRef<M>, build: (replyTo: ActorRef<R>) => M, timeoutMs: number): Promise<R> {
  const query = nactQuery as unknown as (r: ActorRef<M>, m: (t: ActorRef<R>) => M, t: number) => Promise<R>;
  return query(ref, build, timeoutMs);
}

/** Stops an actor and its children, or a whole system. */
export function stopActor(ref: ActorRef<never> | ActorSystem): void {
  (nactStop as unknown as (r: unknown) => void)(ref);
}
