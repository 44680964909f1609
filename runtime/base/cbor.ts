/**
 * The one cbor-x encoding of values in Tributary: journal records, snapshot chunks
 * (journal/codec.ts frames them) and the `cbor` payloads of NATS sources and sinks.
 * One encoder with one set of options, so that bytes written by any of them decode
 * the same way in the others.
 */
import { Encoder } from 'cbor-x';

// Records off: each frame must decode on its own, without shared structures.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true });

/**
 * Encodes a value with cbor-x.
 *
 * @example
 * encodeValue({ v: 1, type: 'batch.completed', time: 1000 })
 */
export function encodeValue(value: unknown): Uint8Array {
  return encoder.encode(value);
}

/**
 * Decodes a cbor-x payload.
 *
 * @example
 * decodeValue(encodeValue([1, 'a'])) // [1, 'a']
 */
export function decodeValue(bytes: Uint8Array): unknown {
  return encoder.decode(bytes);
}
