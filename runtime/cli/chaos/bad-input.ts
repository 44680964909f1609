/**
 * The `--bad-input` part of a chaos run: a seeded sequence of JetStream messages that
 * mixes good JSON records `{"line": "<words>"}` with malformed ones (invalid UTF-8,
 * bad JSON, a CBOR blob, valid JSON of the wrong shape, oversize lines), the
 * workload's decoder, and the oracle of what the good records add to the counts.
 *
 * Oversize lines: the decoder rejects any message longer than
 * {@link INPUT_LINE_BYTES_MAX} bytes before decoding it, so a 200 KB line is
 * dead-lettered like any other undecodable message instead of blowing up a batch
 * (the limit keeps one record from dominating a batch's memory).
 */
import { encodeValue } from '../../base/cbor.ts';
import { seededRandom } from './rng.ts';

/** What a message of the bad input is. */
export type InputKind = 'good' | 'invalid-utf8' | 'bad-json' | 'cbor' | 'wrong-shape' | 'oversize';

/** One message to publish. */
export interface InputMessage {
  readonly kind: InputKind;
  readonly data: Uint8Array;
}

/** Longest message the workload's decoder accepts, in bytes; longer ones are dead-lettered. */
export const INPUT_LINE_BYTES_MAX = 64 * 1024;
/** Size of the oversize lines published (well under nats-server's 1 MB max payload). */
export const OVERSIZE_LINE_BYTES = 200 * 1024;
/** Words of good records start with this, so they never mix with the generator's words. */
export const INPUT_WORD_PREFIX = 'in-';

const INPUT_WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'].map(
  (w) => `${INPUT_WORD_PREFIX}${w}`,
);
const MALFORMED: readonly Exclude<InputKind, 'good'>[] = ['invalid-utf8', 'bad-json', 'cbor', 'wrong-shape', 'oversize'];
const text = new TextEncoder();
const utf8 = new TextDecoder('utf-8', { fatal: true });

function goodLine(rng: () => number): string {
  const n = 1 + Math.floor(rng() * 6);
  const words: string[] = [];
  for (let i = 0; i < n; i++) words.push(INPUT_WORDS[Math.floor(rng() * INPUT_WORDS.length)] as string);
  return words.join(' ');
}

function malformed(kind: Exclude<InputKind, 'good'>, rng: () => number): Uint8Array {
  switch (kind) {
    case 'invalid-utf8': {
      // Latin-1 'é' (0xe9) followed by an ASCII quote is not valid UTF-8.
      const head = text.encode(`{"line": "${goodLine(rng)} caf`);
      return Uint8Array.from([...head, 0xe9, 0x22, 0x7d]);
    }
    case 'bad-json':
      return text.encode(rng() < 0.5 ? `{"line": "${goodLine(rng)}"` : `line: ${goodLine(rng)}`);
    case 'cbor':
      // A CBOR map {line: ...}: bytes a decoder of JSON text must refuse (0xa1 is no UTF-8 lead byte).
      return encodeValue({ line: goodLine(rng) });
    case 'wrong-shape':
      return text.encode(JSON.stringify(rng() < 0.5 ? { text: goodLine(rng) } : [goodLine(rng)]));
    case 'oversize':
      return text.encode(JSON.stringify({ line: `${INPUT_WORDS[0]} `.repeat(OVERSIZE_LINE_BYTES / 9) }));
  }
}

/**
 * The messages of a run: `count` of them, a fifth malformed, every malformed kind at
 * least once; the same list for the same seed.
 *
 * @example
 * badInputMessages(42, 200).filter((m) => m.kind !== 'good').length // 40
 */
export function badInputMessages(seed: number, count: number): InputMessage[] {
  const rng = seededRandom(seed ^ 0x5bd1e995);
  const badEvery = 5;
  const out: InputMessage[] = [];
  let bad = 0;
  for (let i = 0; i < count; i++) {
    if (i % badEvery === badEvery - 1) {
      // Each kind once in order first, then at random; oversize lines stay rare (200 KB each).
      let kind = MALFORMED[bad] ?? (MALFORMED[Math.floor(rng() * (MALFORMED.length - 1))] as Exclude<InputKind, 'good'>);
      if (bad >= MALFORMED.length && bad % 16 === 0) kind = 'oversize';
      bad++;
      out.push({ kind, data: malformed(kind, rng) });
    } else {
      out.push({ kind: 'good', data: text.encode(JSON.stringify({ line: goodLine(rng) })) });
    }
  }
  return out;
}

/**
 * The workload's decoder: bytes to a record `{line}`; throws on anything else, so
 * the message is dead-lettered.
 *
 * @example
 * decodeInputLine(new TextEncoder().encode('{"line":"in-alpha"}')) // { line: 'in-alpha' }
 */
export function decodeInputLine(data: Uint8Array): { line: string } {
  if (data.length > INPUT_LINE_BYTES_MAX) throw new Error(`line of ${data.length} bytes is over the ${INPUT_LINE_BYTES_MAX}-byte limit`);
  const value = JSON.parse(utf8.decode(data)) as unknown;
  if (typeof value !== 'object' || value === null || typeof (value as { line?: unknown }).line !== 'string') {
    throw new Error('not a {"line": string} record');
  }
  return { line: (value as { line: string }).line };
}

/**
 * What the good messages add to the word counts.
 *
 * @example
 * inputWordCounts(badInputMessages(42, 200)).get('in-alpha')
 */
export function inputWordCounts(messages: readonly InputMessage[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of messages) {
    if (m.kind !== 'good') continue;
    for (const w of decodeInputLine(m.data).line.split(' ')) counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  return counts;
}
