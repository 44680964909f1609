/**
 * How message bytes become records (NATS sources) and records become bytes
 * (the JetStream sink).
 */
import { decodeValue, encodeValue } from '../base/cbor.ts';
import { InvalidConfigError } from '../base/errors.ts';

/** A named decoding, or a function of the bytes. */
export type Decoder<T> = 'utf8' | 'json' | 'cbor' | ((data: Uint8Array) => T);
/** A named encoding, or a function of the record. */
export type Encoder<T> = 'utf8' | 'json' | 'cbor' | ((record: T) => Uint8Array);

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The function a decoder names; it throws on malformed input (invalid UTF-8 too).
 *
 * @example
 * decoderOf<string>('utf8')(new TextEncoder().encode('hi')) // 'hi'
 */
export function decoderOf<T>(decoder: Decoder<T>): (data: Uint8Array) => T {
  switch (decoder) {
    case 'utf8':
      return (d) => utf8.decode(d) as T;
    case 'json':
      return (d) => JSON.parse(utf8.decode(d)) as T;
    case 'cbor':
      return (d) => decodeValue(d) as T;
    default:
      if (typeof decoder === 'function') return decoder;
      throw new InvalidConfigError(`unknown decoder ${String(decoder)} (utf8, json, cbor or a function)`);
  }
}

/**
 * Why a decoder failed, as one line of at most 200 characters fit for a NATS
 * header (nats.js throws on CR/LF in header values; a custom decoder may throw a non-Error).
 *
 * @example
 * decodeFailure(new SyntaxError('Unexpected token')) // 'Unexpected token'
 */
export function decodeFailure(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return (text.replace(/[\r\n]+/g, ' ').trim() || 'undecodable').slice(0, 200);
}

/**
 * The function an encoder names.
 *
 * @example
 * encoderOf<unknown>('json')({ a: 1 })
 */
export function encoderOf<T>(encoder: Encoder<T>): (record: T) => Uint8Array {
  const text = new TextEncoder();
  switch (encoder) {
    case 'utf8':
      return (r) => text.encode(String(r));
    case 'json':
      return (r) => text.encode(JSON.stringify(r));
    case 'cbor':
      return (r) => encodeValue(r);
    default:
      if (typeof encoder === 'function') return encoder;
      throw new InvalidConfigError(`unknown encoder ${String(encoder)} (utf8, json, cbor or a function)`);
  }
}
