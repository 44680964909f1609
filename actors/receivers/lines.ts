/**
 * Lines of UTF-8 text from bytes that arrive in pieces (socket reads, file slices).
 * Bytes are split on `\n` before decoding, so a line split across pieces, or a
 * character split across them, is put back together; each line is decoded strictly:
 * a line that is not valid UTF-8, or longer than the limit, is set aside with why,
 * never turned into U+FFFD or cut.
 */
import type { SetAside } from '../../runtime/graph/wire.ts';

/** What one piece of bytes completed. */
export interface SplitLines {
  readonly lines: string[];
  /** Lines that are not records: a dead letter each. */
  readonly rejected: SetAside[];
}

/** Bytes of a rejected line kept in its dead letter. */
const HEAD_BYTES = 256;
const LF = 0x0a;
const CR = 0x0d;

/**
 * Splits bytes into lines (without their `\n` or `\r\n`).
 *
 * @example
 * const s = new LineSplitter(1024 * 1024);
 * s.push(Buffer.from('a\nb')); // { lines: ['a'], rejected: [] }
 * s.end();                     // { lines: ['b'], rejected: [] }
 */
export class LineSplitter {
  readonly #max: number;
  readonly #decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  /** The unfinished line's bytes (only its head once it is over the limit). */
  #parts: Buffer[] = [];
  #bytes = 0;
  #over = false;

  constructor(lineBytesMax: number) {
    this.#max = lineBytesMax;
  }

  /** The lines this piece completes. */
  push(piece: Buffer): SplitLines {
    const out: SplitLines = { lines: [], rejected: [] };
    const first = piece.indexOf(LF);
    if (first === -1) {
      this.#add(piece);
      return out;
    }
    this.#add(piece.subarray(0, first));
    this.#finish(out);
    const last = piece.lastIndexOf(LF);
    if (last > first) this.#whole(piece.subarray(first + 1, last), out);
    this.#add(piece.subarray(last + 1));
    return out;
  }

  /** The last line when the bytes end without a newline. */
  end(): SplitLines {
    const out: SplitLines = { lines: [], rejected: [] };
    if (this.#bytes > 0) this.#finish(out, true);
    return out;
  }

  /** Complete lines between two newlines: decoded at once when they can be. */
  #whole(bytes: Buffer, out: SplitLines): void {
    if (bytes.length <= this.#max) {
      let text: string | undefined;
      try {
        text = this.#decoder.decode(bytes);
      } catch {
        // Some line is not UTF-8: find which, line by line.
      }
      if (text !== undefined) {
        for (const l of text.split('\n')) out.lines.push(l.endsWith('\r') ? l.slice(0, -1) : l);
        return;
      }
    }
    let start = 0;
    for (;;) {
      const nl = bytes.indexOf(LF, start);
      this.#add(bytes.subarray(start, nl === -1 ? bytes.length : nl));
      this.#finish(out);
      if (nl === -1) return;
      start = nl + 1;
    }
  }

  #add(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.#bytes += bytes.length;
    if (this.#over) return;
    this.#parts.push(bytes);
    // One byte of slack: a line at the limit may still end in the CR of a CRLF.
    if (this.#bytes > this.#max + 1) {
      this.#over = true;
      this.#parts = [Buffer.concat(this.#parts).subarray(0, HEAD_BYTES)];
    }
  }

  #finish(out: SplitLines, atEnd = false): void {
    let line = this.#parts.length === 1 ? (this.#parts[0] as Buffer) : Buffer.concat(this.#parts);
    const bytes = this.#bytes;
    const over = this.#over;
    this.#parts = [];
    this.#bytes = 0;
    this.#over = false;
    if (!over && line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, -1);
    // A CR at the very end is the first half of a CRLF that never came, not text.
    if (atEnd && !over && line.length === 0) return;
    if (over || line.length > this.#max) {
      out.rejected.push({
        record: { bytes, head: line.subarray(0, HEAD_BYTES).toString('utf8') },
        error: `line of ${bytes} bytes is longer than lineBytesMax (${this.#max})`,
      });
      return;
    }
    try {
      out.lines.push(this.#decoder.decode(line));
    } catch {
      out.rejected.push({ record: { base64: line.toString('base64'), text: line.toString('utf8') }, error: 'line is not valid UTF-8' });
    }
  }
}
