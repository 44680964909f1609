/**
 * Encoding of journal records and snapshot chunks: cbor-x payloads (runtime/base/cbor.ts)
 * in frames of `length (u32 LE) | crc32c (u32 LE) | payload`, validated before
 * writing and after reading.
 */
import { crc32c } from '@node-rs/crc32';

/** Bytes of a frame header. */
export const FRAME_HEADER_BYTES = 8;
/** Largest payload accepted in one frame (guards against a corrupt length). */
export const FRAME_PAYLOAD_BYTES_MAX = 256 * 1024 * 1024;

/**
 * One frame around `payload`.
 *
 * @example
 * const frame = encodeFrame(encodeValue({ v: 1, type: 'batch.completed', time: 1000 }));
 */
export function encodeFrame(payload: Uint8Array): Buffer {
  if (payload.length > FRAME_PAYLOAD_BYTES_MAX) throw new RangeError(`frame payload of ${payload.length} bytes exceeds the maximum`);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt32LE(payload.length, 0);
  frame.writeUInt32LE(crc32c(payload), 4);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/** The result of reading frames from a buffer. */
export interface FrameScan {
  readonly payloads: Buffer[];
  /** Offsets where each payload's frame starts. */
  readonly offsets: number[];
  /** Bytes of whole, valid frames from the start. */
  readonly validBytes: number;
  /** Why reading stopped before the end, if it did. */
  readonly stop?: { readonly offset: number; readonly reason: 'torn' | 'crc' | 'length' };
}

/**
 * Reads consecutive frames from `buf`, stopping at the first incomplete or corrupt one.
 *
 * @example
 * const { payloads, stop } = scanFrames(await fs.readFile(segment));
 */
export function scanFrames(buf: Buffer): FrameScan {
  const payloads: Buffer[] = [];
  const offsets: number[] = [];
  let offset = 0;
  while (offset < buf.length) {
    if (buf.length - offset < FRAME_HEADER_BYTES) return { payloads, offsets, validBytes: offset, stop: { offset, reason: 'torn' } };
    const length = buf.readUInt32LE(offset);
    const crc = buf.readUInt32LE(offset + 4);
    if (length > FRAME_PAYLOAD_BYTES_MAX) return { payloads, offsets, validBytes: offset, stop: { offset, reason: 'length' } };
    const end = offset + FRAME_HEADER_BYTES + length;
    if (end > buf.length) return { payloads, offsets, validBytes: offset, stop: { offset, reason: 'torn' } };
    const payload = buf.subarray(offset + FRAME_HEADER_BYTES, end);
    if (crc32c(payload) !== crc) return { payloads, offsets, validBytes: offset, stop: { offset, reason: 'crc' } };
    payloads.push(payload);
    offsets.push(offset);
    offset = end;
  }
  return { payloads, offsets, validBytes: offset };
}
