/**
 * The engine's side of custom receivers: each one's buffer is an actor under the
 * context's root, so the records a receiver stores from any callback are handled
 * one message at a time, in order, and a cut takes exactly what came before it.
 */
import { randomBytes } from 'node:crypto';
import { assertNever } from '../../runtime/base/assert.ts';
import type { ReceiverBuffer, ReceiverBufferHooks, ReceiverHost } from '../../runtime/graph/input-source.ts';
import type { ReceivedBlock, SetAside } from '../../runtime/graph/wire.ts';
import { type ReceiverMessage, type Reply, unwrap } from '../messages.ts';
import { type ActorRef, ask, dispatch, spawnActor } from '../system.ts';

/**
 * An actor name for the stream `name`. nact accepts only URL-safe characters, and
 * stream names hold others (`receiverStream#1`, any `uid`), so each other UTF-16
 * unit becomes `$` and four hex digits; `$` is escaped too, keeping names distinct.
 */
function actorName(name: string): string {
  return `receiver-${name.replace(/[^A-Za-z0-9\-_.+!*'(),]/g, (c) => `$${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}`;
}

interface Buffer {
  records: unknown[];
  letters: SetAside[];
  blocks: number;
}

let blockSeq = 0;
// Not the pid alone: a restarted container reuses pid 1, and a pending block's id from before the crash must not recur.
const processToken = `${process.pid}.${randomBytes(4).toString('hex')}`;

function openBuffer(parent: ActorRef<never>, name: string, hooks: ReceiverBufferHooks): ReceiverBuffer {
  const ref = spawnActor<Buffer, ReceiverMessage>(parent, actorName(name), { records: [], letters: [], blocks: 0 }, (buf, msg) => {
    switch (msg.type) {
      case 'receiver.store':
        for (const r of msg.records) buf.records.push(r);
        hooks.received(msg.records.length);
        return buf;
      case 'receiver.setAside':
        buf.letters.push(msg.letter);
        return buf;
      case 'receiver.cut': {
        const { letters } = buf;
        const all = buf.records.length <= msg.max;
        const records = all ? buf.records : buf.records.slice(0, msg.max);
        const rest = all ? [] : buf.records.slice(msg.max);
        const id = `${name}-${msg.time}-${processToken}-${++blockSeq}`;
        const block = records.length === 0 && letters.length === 0 ? null : { id, records, ...(letters.length > 0 ? { letters } : {}) };
        dispatch(msg.replyTo, { ok: true, value: block });
        hooks.drained(records.length);
        return { records: rest, letters: [], blocks: buf.blocks + (block ? 1 : 0) };
      }
      default:
        return assertNever(msg);
    }
  });
  return {
    store(records) {
      dispatch(ref, { type: 'receiver.store', records });
    },
    setAside(letter) {
      dispatch(ref, { type: 'receiver.setAside', letter });
    },
    cut(time, max = Number.POSITIVE_INFINITY) {
      return ask<ReceiverMessage, Reply<ReceivedBlock | null>>(
        ref,
        (replyTo) => ({ type: 'receiver.cut', replyTo, time, max }),
        60_000,
      ).then(unwrap);
    },
  };
}

/**
 * The receiver host of a running context: buffers spawn under `parent` (the
 * context's root actor) and stop with it.
 *
 * @example
 * const env = { receiverHost: actorReceiverHost(root), ... };
 */
export function actorReceiverHost(parent: ActorRef<never>): ReceiverHost {
  return { openBuffer: (name, hooks) => openBuffer(parent, name, hooks) };
}
