/**
 * Checking a stored snapshot's bytes as a restore would read them (CRC of every
 * frame, then the decoding and completeness checks of {@link decodeSnapshot}), but
 * answering with where the first fault is rather than throwing: `tributary inspect
 * --verify` lists every bad snapshot with its offset.
 */
import { FRAME_HEADER_BYTES, scanFrames } from '../journal/codec.ts';
import { decodeValue } from '../runtime/base/cbor.ts';
import { decodeSnapshot, type SnapshotKey } from './snapshot-codec.ts';

/** A snapshot that reads back, or where and why it does not. */
export type SnapshotCheck =
  | { readonly ok: true; readonly kind: 'full' | 'delta'; readonly entries: number }
  | { readonly ok: false; readonly offset: number; readonly reason: string };

const STOP_REASONS = {
  torn: 'frame runs past the end (truncated)',
  crc: 'CRC mismatch',
  length: 'frame length out of range',
} as const;

/**
 * Checks the bytes of snapshot `key`; `where` names it in reasons.
 *
 * @example
 * const check = await checkSnapshot({ operator: 'totals', partition: 0, time: 3000 }, bytes, file);
 * if (!check.ok) console.log(`${file} at offset ${check.offset}: ${check.reason}`);
 */
export async function checkSnapshot(key: SnapshotKey, bytes: Buffer, where: string): Promise<SnapshotCheck> {
  const scan = scanFrames(bytes);
  if (scan.stop) return { ok: false, offset: scan.stop.offset, reason: STOP_REASONS[scan.stop.reason] };
  if (scan.payloads.length === 0) return { ok: false, offset: 0, reason: 'empty file' };
  // A frame whose CRC holds but whose payload does not decode is named by its own offset.
  for (const [i, payload] of scan.payloads.entries()) {
    try {
      decodeValue(payload);
    } catch {
      return { ok: false, offset: scan.offsets[i] as number, reason: `frame ${i} does not decode` };
    }
  }
  try {
    const data = await decodeSnapshot(key, scan.payloads, where);
    return { ok: true, kind: data.kind, entries: data.keys.length };
  } catch (error) {
    const message = (error as Error).message.replace(`snapshot ${where}: `, '');
    const frame = /frame (\d+)/.exec(message);
    const offset = frame ? (scan.offsets[Number(frame[1])] ?? 0) : /incomplete|end frame/.test(message) ? lastFrameOffset(scan) : 0;
    return { ok: false, offset, reason: message };
  }
}

/** Where the last whole frame starts (what an incomplete snapshot lacks comes after it). */
function lastFrameOffset(scan: ReturnType<typeof scanFrames>): number {
  return scan.offsets[scan.offsets.length - 1] ?? Math.max(0, scan.validBytes - FRAME_HEADER_BYTES);
}
