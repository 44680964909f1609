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
  /** Brands the type: only startActorSystem makes one. */
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

/** Resolves a pending ask early, so that nact clears the timer it armed for it. */
const CANCELLED: unique symbol = Symbol('tributary.ask-cancelled');

interface PendingAsk {
  readonly target: object;
  replyTo: object | undefined;
  cancelled: Error | undefined;
}

/** Asks awaiting a reply. Few at any time: one per task of the running batch. */
const pendingAsks = new Set<PendingAsk>();

/** The parent of every actor spawned here, to find the asks an actor's stop affects. */
const parentOf = new WeakMap<object, object>();

function isUnder(ref: object, ancestor: object): boolean {
  for (let r: object | undefined = ref; r !== undefined; r = parentOf.get(r)) {
    if (r === ancestor) return true;
  }
  return false;
}

/**
 * Rejects every pending ask addressed to `stopped` or to an actor under it. nact
 * drops the mailbox of a stopped actor, so such an ask would otherwise wait for its
 * whole timeout (minutes for batch tasks), and its timer would keep the process alive.
 */
function cancelAsksUnder(stopped: object, error: Error): void {
  for (const pending of pendingAsks) {
    if (pending.replyTo === undefined || !isUnder(pending.target, stopped)) continue;
    pending.cancelled = error;
    (nactDispatch as unknown as (r: object, m: unknown) => void)(pending.replyTo, CANCELLED);
  }
}

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
 * this engine catch operating errors and reply with them), with a process warning;
 * asks still waiting on the actor reject with the handler's error.
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
  const ref = spawn(parent as NactRef, f, name, {
    initialState,
    onCrash: (_msg: unknown, error: unknown, ctx: { stop: unknown }) => {
      const message = `actor ${name} stopped after an unhandled error: ${String(error)}`;
      process.emitWarning(message);
      cancelAsksUnder(ref, new Error(message, { cause: error }));
      return ctx.stop;
    },
  });
  parentOf.set(ref, parent);
  return ref as ActorRef<M>;
}

/** Sends a message without waiting (fire and forget). */
export function dispatch<M>(ref: ActorRef<M>, message: M): void {
  (nactDispatch as unknown as (r: ActorRef<M>, m: M) => void)(ref, message);
}

/**
 * Sends a message that carries a reply address and resolves with the reply.
 *
 * `timeoutMs` is a safety net against a lost reply, not a scheduling device. An ask
 * to an actor that is stopped, or stops (or crashes) before replying, rejects at once.
 *
 * @example
 * const result = await ask(worker, (replyTo) => ({ type: 'stage.run', replyTo, ... }), 60_000);
 */
export function ask<M, R>(ref: ActorRef<M>, build: (replyTo: ActorRef<R>) => M, timeoutMs: number): Promise<R> {
  const query = nactQuery as unknown as (r: ActorRef<M>, m: (t: ActorRef<R>) => M, t: number) => Promise<R | typeof CANCELLED>;
  const pending: PendingAsk = { target: ref, replyTo: undefined, cancelled: undefined };
  pendingAsks.add(pending);
  let reply: Promise<R | typeof CANCELLED>;
  try {
    reply = query(
      ref,
      (replyTo) => {
        pending.replyTo = replyTo;
        return build(replyTo);
      },
      timeoutMs,
    );
  } catch (error) {
    pendingAsks.delete(pending);
    return Promise.reject(error);
  }
  return reply.then(
    (value) => {
      pendingAsks.delete(pending);
      if (value === CANCELLED) throw pending.cancelled;
      return value;
    },
    (error: unknown) => {
      pendingAsks.delete(pending);
      throw error;
    },
  );
}

/** Stops an actor and its children, or a whole system; asks waiting on them reject. */
export function stopActor(ref: ActorRef<never> | ActorSystem): void {
  cancelAsksUnder(ref, new Error('the actor stopped before it replied'));
  (nactStop as unknown as (r: unknown) => void)(ref);
}
