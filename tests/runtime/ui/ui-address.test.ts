/**
 * `--ui` / `StreamingContextConfig.ui` addresses: what is accepted (loopback by
 * default, port 0 for a free port) and that anything else is INVALID_CONFIG, at
 * construction, before anything starts.
 */
import test from 'ava';
import { StreamingContext } from '../../../runtime/api/index.ts';
import { ManualClock } from '../../../runtime/api/testing.ts';
import { parseUiAddress, uiUrl } from '../../../runtime/ui/ui-address.ts';

test('ui address - host:port, :port, port and { host, port }; the host defaults to 127.0.0.1', (t) => {
  t.deepEqual(parseUiAddress('127.0.0.1:4040'), { host: '127.0.0.1', port: 4040 });
  t.deepEqual(parseUiAddress('0.0.0.0:80'), { host: '0.0.0.0', port: 80 });
  t.deepEqual(parseUiAddress('localhost:0'), { host: 'localhost', port: 0 });
  t.deepEqual(parseUiAddress(':4040'), { host: '127.0.0.1', port: 4040 });
  t.deepEqual(parseUiAddress('4040'), { host: '127.0.0.1', port: 4040 });
  t.deepEqual(parseUiAddress(4040), { host: '127.0.0.1', port: 4040 });
  t.deepEqual(parseUiAddress('[::1]:4040'), { host: '::1', port: 4040 });
  t.deepEqual(parseUiAddress({ port: 0 }), { host: '127.0.0.1', port: 0 });
  t.deepEqual(parseUiAddress({ host: 'ui.example.org', port: 65535 }), { host: 'ui.example.org', port: 65535 });
  t.is(uiUrl({ host: '::1', port: 4040 }), 'http://[::1]:4040/');
  t.is(uiUrl({ host: '127.0.0.1', port: 4040 }), 'http://127.0.0.1:4040/');
});

test('ui address - anything else is INVALID_CONFIG saying what was expected', (t) => {
  const cases: [unknown, RegExp][] = [
    ['', /port is missing/],
    ['localhost', /port is missing/],
    ['127.0.0.1:', /a port from 0 to 65535/],
    ['127.0.0.1:http', /a port from 0 to 65535/],
    ['127.0.0.1:65536', /a port from 0 to 65535/],
    ['127.0.0.1:-1', /a port from 0 to 65535/],
    ['::1:4040', /IPv6 host in brackets/],
    ['bad host:4040', /a host name or an IP address/],
    ['http://127.0.0.1:4040', /host:port, not a URL/],
    [4040.5, /a port from 0 to 65535/],
    [-1, /a port from 0 to 65535/],
    [{ host: '', port: 1 }, /a host name or an IP address/],
    [{ port: '4040' }, /a port from 0 to 65535/],
    [null, /a string host:port/],
    [true, /a string host:port/],
  ];
  for (const [input, message] of cases) {
    const error = t.throws(() => parseUiAddress(input as string), undefined, JSON.stringify(input));
    t.is((error as { code?: string }).code, 'INVALID_CONFIG', JSON.stringify(input));
    t.regex(error?.message ?? '', message, JSON.stringify(input));
  }
});

test('ui address - a bad address fails the context at construction and at ssc.ui(), before any start', (t) => {
  const clock = new ManualClock();
  const error = t.throws(() => new StreamingContext({ appName: 'ui-bad', batchDuration: 1000, clock, ui: 'nowhere' }));
  t.is((error as { code?: string }).code, 'INVALID_CONFIG');
  const ssc = new StreamingContext({ appName: 'ui-bad', batchDuration: 1000, clock });
  t.throws(() => ssc.ui('127.0.0.1:99999'), { code: 'INVALID_CONFIG' });
  t.is(ssc.uiAddress, undefined, 'no address before start');
});
