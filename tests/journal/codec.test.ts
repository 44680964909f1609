import { crc32c } from '@node-rs/crc32';
import test from 'ava';
import { encodeFrame, FRAME_HEADER_BYTES, FRAME_PAYLOAD_BYTES_MAX, scanFrames } from '../../journal/codec.ts';
import { decodeValue, encodeValue } from '../../runtime/base/cbor.ts';

const EVENTS = [
  { v: 1, type: 'batch.completed', time: 1000 },
  { v: 1, type: 'batch.completed', time: 2000 },
  { v: 1, type: 'context.stopped', time: 3000 },
];

/** Three frames back to back, with where each one starts. */
function threeFrames(): { buf: Buffer; starts: [number, number, number] } {
  const frames = EVENTS.map((e) => encodeFrame(encodeValue(e)));
  const starts: number[] = [];
  let at = 0;
  for (const f of frames) {
    starts.push(at);
    at += f.length;
  }
  return { buf: Buffer.concat(frames), starts: starts as [number, number, number] };
}

test('codec - frames round trip with their offsets', (t) => {
  const { buf, starts } = threeFrames();
  const scan = scanFrames(buf);
  t.is(scan.stop, undefined);
  t.is(scan.validBytes, buf.length);
  t.deepEqual(scan.offsets, starts);
  t.deepEqual(
    scan.payloads.map((p) => decodeValue(p)),
    EVENTS,
  );
});

test('codec - a frame header holds the payload length and its crc32c, little-endian', (t) => {
  const payload = encodeValue({ v: 1, type: 'batch.completed', time: 1 });
  const frame = encodeFrame(payload);
  t.is(frame.length, FRAME_HEADER_BYTES + payload.length);
  t.is(frame.readUInt32LE(0), payload.length);
  t.is(frame.readUInt32LE(4), crc32c(Buffer.from(payload)));
  t.deepEqual(frame.subarray(FRAME_HEADER_BYTES), Buffer.from(payload));
});

test('codec - an empty buffer has no frames and no stop', (t) => {
  const scan = scanFrames(Buffer.alloc(0));
  t.deepEqual(scan, { payloads: [], offsets: [], validBytes: 0 });
});

test("codec - scanFrames stops with 'torn' on a frame cut in its payload", (t) => {
  const { buf, starts } = threeFrames();
  const scan = scanFrames(buf.subarray(0, buf.length - 3));
  t.deepEqual(scan.stop, { offset: starts[2], reason: 'torn' });
  t.is(scan.validBytes, starts[2]);
  t.is(scan.payloads.length, 2);
});

test("codec - scanFrames stops with 'torn' on a frame cut in its header", (t) => {
  const { buf, starts } = threeFrames();
  const start = starts[2];
  for (const keep of [1, FRAME_HEADER_BYTES - 1, FRAME_HEADER_BYTES]) {
    const scan = scanFrames(buf.subarray(0, start + keep));
    t.deepEqual(scan.stop, { offset: start, reason: 'torn' }, `header cut after ${keep} bytes`);
    t.is(scan.validBytes, start);
  }
});

test("codec - scanFrames stops with 'crc' on a flipped payload byte", (t) => {
  const { buf, starts } = threeFrames();
  const bad = Buffer.from(buf);
  const at = starts[1] + FRAME_HEADER_BYTES + 2;
  bad[at] = (bad[at] as number) ^ 0x01;
  const scan = scanFrames(bad);
  t.deepEqual(scan.stop, { offset: starts[1], reason: 'crc' });
  t.is(scan.validBytes, starts[1]);
  t.is(scan.payloads.length, 1);
});

test("codec - scanFrames stops with 'crc' on a flipped checksum byte", (t) => {
  const { buf, starts } = threeFrames();
  const bad = Buffer.from(buf);
  const at = starts[0] + 5;
  bad[at] = (bad[at] as number) ^ 0x80;
  t.deepEqual(scanFrames(bad).stop, { offset: 0, reason: 'crc' });
});

test("codec - scanFrames stops with 'length' on an absurd length", (t) => {
  const { buf, starts } = threeFrames();
  const bad = Buffer.from(buf);
  bad.writeUInt32LE(0xffffffff, starts[1]);
  const scan = scanFrames(bad);
  t.deepEqual(scan.stop, { offset: starts[1], reason: 'length' });
  t.is(scan.payloads.length, 1);
  bad.writeUInt32LE(FRAME_PAYLOAD_BYTES_MAX + 1, starts[1]);
  t.is(scanFrames(bad).stop?.reason, 'length');
});

test('codec - encodeFrame refuses a payload above the maximum', (t) => {
  // A view with a fake length avoids allocating 256 MiB.
  const huge = { length: FRAME_PAYLOAD_BYTES_MAX + 1 } as unknown as Uint8Array;
  t.throws(() => encodeFrame(huge), { instanceOf: RangeError });
});

test('codec - cbor round trips undefined, alone and nested', (t) => {
  t.is(decodeValue(encodeValue(undefined)), undefined);
  const back = decodeValue(encodeValue({ a: undefined, list: [undefined, 1, undefined] })) as Record<string, unknown>;
  t.true('a' in back);
  t.is(back.a, undefined);
  t.deepEqual(back.list, [undefined, 1, undefined]);
});

test('codec - cbor round trips nested arrays and objects', (t) => {
  const value = {
    v: 1,
    deep: [1, [2, [3, [4, { five: [5, { six: 6 }] }]]]],
    empty: { list: [], object: {} },
    flags: [true, false, null],
    pairs: [
      [['user', 1], { count: 2 }],
      [{ day: 3, user: 'x' }, [4, 5]],
    ],
  };
  t.deepEqual(decodeValue(encodeValue(value)), value);
});

test('codec - cbor round trips unicode strings', (t) => {
  const strings = ['', 'plain', 'héllo', '日本語', '🌊 emoji 🙂', 'a\u0000b', '\u{10FFFF}', 'x'.repeat(70_000)];
  for (const s of strings) t.is(decodeValue(encodeValue(s)), s);
  t.deepEqual(decodeValue(encodeValue({ 'clé 🔑': '値' })), { 'clé 🔑': '値' });
});

test('codec - cbor round trips big, negative and fractional numbers', (t) => {
  const numbers = [
    0,
    1,
    -1,
    255,
    -256,
    65_536,
    2 ** 31,
    -(2 ** 31),
    2 ** 32,
    -(2 ** 32) - 1,
    2 ** 40,
    -(2 ** 40),
    Number.MAX_SAFE_INTEGER,
    Number.MIN_SAFE_INTEGER,
    1.5,
    -0.25,
    1e300,
    -1e-300,
    Number.MAX_VALUE,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
  ];
  for (const n of numbers) t.is(decodeValue(encodeValue(n)), n, String(n));
  t.true(Number.isNaN(decodeValue(encodeValue(Number.NaN))));
  t.is(decodeValue(encodeValue(2n ** 70n)), 2n ** 70n);
  t.is(decodeValue(encodeValue(-(2n ** 70n))), -(2n ** 70n));
});

test('codec - cbor keeps Maps with non-string keys', (t) => {
  const m = new Map<unknown, unknown>([
    [1, 'one'],
    ['two', 2],
  ]);
  t.deepEqual(decodeValue(encodeValue({ m })), { m });
});

test('codec - each encoded value decodes on its own after later encodes', (t) => {
  // cbor-x encodes into a shared buffer: earlier results must not be overwritten.
  const first = encodeValue({ v: 1, type: 'batch.completed', time: 1 });
  const copy = Buffer.from(first);
  for (let i = 0; i < 2000; i++) encodeValue({ filler: 'y'.repeat(100), i });
  t.deepEqual(Buffer.from(first), copy);
  t.deepEqual(decodeValue(first), { v: 1, type: 'batch.completed', time: 1 });
});
