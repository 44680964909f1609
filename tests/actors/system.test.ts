import anyTest, { type TestFn } from 'ava';
import { type ActorRef, type ActorSystem, ask, dispatch, spawnActor, startActorSystem, stopActor } from '../../actors/system.ts';

interface Ctx {
  system: ActorSystem;
}

const test = anyTest as TestFn<Ctx>;

type CounterMessage =
  | { readonly type: 'add'; readonly n: number }
  | { readonly type: 'get'; readonly replyTo: ActorRef<number> }
  | { readonly type: 'boom' }
  | { readonly type: 'whoami'; readonly replyTo: ActorRef<string> };

function spawnCounter(parent: ActorSystem | ActorRef<never>, name: string): ActorRef<CounterMessage> {
  return spawnActor<number, CounterMessage>(parent, name, 0, (n, msg, ctx) => {
    switch (msg.type) {
      case 'add':
        return n + msg.n;
      case 'get':
        dispatch(msg.replyTo, n);
        return n;
      case 'boom':
        throw new Error(`boom in ${ctx.name}`);
      case 'whoami':
        dispatch(msg.replyTo, ctx.name);
        return n;
    }
  });
}

function get(ref: ActorRef<CounterMessage>, timeoutMs = 5000): Promise<number> {
  return ask<CounterMessage, number>(ref, (replyTo) => ({ type: 'get', replyTo }), timeoutMs);
}

/** Resolves with the next process warning whose message matches `pattern`. */
function nextWarning(pattern: RegExp): Promise<Error> {
  return new Promise((resolve) => {
    const onWarning = (w: Error) => {
      if (!pattern.test(w.message)) return;
      process.off('warning', onWarning);
      resolve(w);
    };
    process.on('warning', onWarning);
  });
}

test.before((t) => {
  t.context.system = startActorSystem('system-test');
});

test.after.always((t) => {
  stopActor(t.context.system);
});

test('system - dispatch updates state in order and ask reads it', async (t) => {
  const ref = spawnCounter(t.context.system, 'counter-order');
  for (let i = 1; i <= 100; i++) dispatch(ref, { type: 'add', n: i });
  t.is(await get(ref), 5050);
});

test('system - the handler sees its name and self', async (t) => {
  const ref = spawnCounter(t.context.system, 'counter-name');
  t.is(await ask<CounterMessage, string>(ref, (replyTo) => ({ type: 'whoami', replyTo }), 5000), 'counter-name');
  type Echo = { readonly type: 'self'; readonly replyTo: ActorRef<boolean> };
  const echo = spawnActor<null, Echo>(t.context.system, 'echo-self', null, (s, msg, ctx) => {
    dispatch(msg.replyTo, ctx.self === echo);
    return s;
  });
  t.true(await ask<Echo, boolean>(echo, (replyTo) => ({ type: 'self', replyTo }), 5000));
});

test('system - an async handler finishes one message before the next starts', async (t) => {
  type Msg = { readonly type: 'work'; readonly gate: Promise<void> } | { readonly type: 'log'; readonly replyTo: ActorRef<string[]> };
  const ref = spawnActor<string[], Msg>(t.context.system, 'async-order', [], async (log, msg) => {
    if (msg.type === 'log') {
      dispatch(msg.replyTo, log);
      return log;
    }
    log.push('start');
    await msg.gate;
    log.push('end');
    return log;
  });
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  dispatch(ref, { type: 'work', gate });
  dispatch(ref, { type: 'work', gate: Promise.resolve() });
  const log = ask<Msg, string[]>(ref, (replyTo) => ({ type: 'log', replyTo }), 5000);
  open();
  t.deepEqual(await log, ['start', 'end', 'start', 'end']);
});

test('system - actors under a parent actor work and stop with it', async (t) => {
  const parent = spawnActor<null, never>(t.context.system, 'parent', null, (s) => s);
  const child = spawnCounter(parent, 'child');
  dispatch(child, { type: 'add', n: 2 });
  t.is(await get(child), 2);
  stopActor(parent);
  await t.throwsAsync(get(child), { message: /stopped/ });
});

test('system - a stopped actor refuses asks at once and ignores dispatches', async (t) => {
  const ref = spawnCounter(t.context.system, 'counter-stopped');
  dispatch(ref, { type: 'add', n: 1 });
  t.is(await get(ref), 1);
  stopActor(ref);
  t.notThrows(() => dispatch(ref, { type: 'add', n: 1 }));
  await t.throwsAsync(get(ref, 600_000), { message: /stopped/ });
});

test('system - spawning a second actor of the same name under one parent throws', (t) => {
  spawnCounter(t.context.system, 'twin');
  t.throws(() => spawnCounter(t.context.system, 'twin'), { message: /twin/ });
});

test('system - ask rejects after its timeout when no reply comes', async (t) => {
  type Silent = { readonly type: 'ignored'; readonly replyTo: ActorRef<number> };
  const ref = spawnActor<null, Silent>(t.context.system, 'silent', null, (s) => s);
  await t.throwsAsync(
    ask<Silent, number>(ref, (replyTo) => ({ type: 'ignored', replyTo }), 20),
    { message: /Timeout/i },
  );
});

test('system - a handler that throws stops its actor with a warning, not the process', async (t) => {
  const faulty = spawnCounter(t.context.system, 'faulty');
  const bystander = spawnCounter(t.context.system, 'bystander');
  const warned = nextWarning(/faulty/);
  dispatch(faulty, { type: 'add', n: 1 });
  dispatch(faulty, { type: 'boom' });
  const warning = await warned;
  t.regex(warning.message, /actor faulty stopped after an unhandled error: Error: boom in faulty/);
  await t.throwsAsync(get(faulty), { message: /stopped/ });
  dispatch(bystander, { type: 'add', n: 41 });
  t.is(await get(bystander), 41);
  t.is(process.exitCode ?? 0, 0);
});

test('system - an ask whose handler throws rejects at once with the handler error', async (t) => {
  type Msg = { readonly type: 'explode'; readonly replyTo: ActorRef<number> };
  const ref = spawnActor<null, Msg>(t.context.system, 'explode-on-ask', null, () => {
    throw new Error('no answer for you');
  });
  const warned = nextWarning(/explode-on-ask/);
  // A ten-minute safety timeout: the rejection must come from the crash, not the timer.
  const error = (await t.throwsAsync(ask<Msg, number>(ref, (replyTo) => ({ type: 'explode', replyTo }), 600_000))) as Error;
  t.regex(error.message, /explode-on-ask stopped after an unhandled error/);
  t.is((error.cause as Error).message, 'no answer for you');
  await warned;
});

test('system - stopping an actor rejects the asks waiting on it and its children', async (t) => {
  type Msg = { readonly type: 'hold'; readonly replyTo: ActorRef<number>; readonly gate: Promise<void> };
  const parent = spawnActor<null, never>(t.context.system, 'holding-parent', null, (s) => s);
  const entered: (() => void)[] = [];
  const spawnHolder = (p: ActorSystem | ActorRef<never>, name: string) =>
    spawnActor<null, Msg>(p, name, null, async (s, msg) => {
      entered.shift()?.();
      await msg.gate;
      dispatch(msg.replyTo, 1);
      return s;
    });
  const child = spawnHolder(parent, 'holding-child');
  const other = spawnHolder(t.context.system, 'holding-other');
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  const inChild = new Promise<void>((resolve) => entered.push(resolve));
  const running = ask<Msg, number>(child, (replyTo) => ({ type: 'hold', replyTo, gate }), 600_000);
  const queued = ask<Msg, number>(child, (replyTo) => ({ type: 'hold', replyTo, gate }), 600_000);
  await inChild;
  const inOther = new Promise<void>((resolve) => entered.push(resolve));
  const unaffected = ask<Msg, number>(other, (replyTo) => ({ type: 'hold', replyTo, gate }), 600_000);
  await inOther;
  stopActor(parent);
  await t.throwsAsync(running, { message: /stopped before it replied/ });
  await t.throwsAsync(queued, { message: /stopped before it replied/ });
  open();
  t.is(await unaffected, 1);
});

test('system - an async handler that rejects stops its actor with a warning, not the process', async (t) => {
  type Msg = { readonly type: 'fail' } | { readonly type: 'ping'; readonly replyTo: ActorRef<string> };
  const ref = spawnActor<null, Msg>(t.context.system, 'rejecting', null, async (s, msg) => {
    if (msg.type === 'fail') {
      await Promise.resolve();
      throw new Error('async failure');
    }
    dispatch(msg.replyTo, 'pong');
    return s;
  });
  t.is(await ask<Msg, string>(ref, (replyTo) => ({ type: 'ping', replyTo }), 5000), 'pong');
  const warned = nextWarning(/rejecting/);
  dispatch(ref, { type: 'fail' });
  t.regex((await warned).message, /async failure/);
  await t.throwsAsync(
    ask<Msg, string>(ref, (replyTo) => ({ type: 'ping', replyTo }), 5000),
    { message: /stopped/ },
  );
});

test('system - a second system runs independently of a stopped one', async (t) => {
  const other = startActorSystem();
  const a = spawnCounter(other, 'counter');
  const b = spawnCounter(t.context.system, 'counter');
  dispatch(a, { type: 'add', n: 5 });
  dispatch(b, { type: 'add', n: 7 });
  t.is(await get(a), 5);
  stopActor(other);
  await t.throwsAsync(get(a), { message: /stopped/ });
  t.is(await get(b), 7);
});
