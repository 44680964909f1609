/**
 * Where the web UI listens: `host:port`, `:port` or `port` (host 127.0.0.1), as the
 * `--ui` flag and `StreamingContextConfig.ui` take it. Loopback is the default
 * because the page shows record counts, errors and worker names to anyone who can
 * reach it; listening wider is an explicit choice.
 */
import { InvalidConfigError } from '../base/errors.ts';

/** A validated listening address. */
export interface UiAddress {
  readonly host: string;
  /** 0 picks a free port (tests); the bound one is read back from the server. */
  readonly port: number;
}

/** What a user may write: `'127.0.0.1:4040'`, `':4040'`, `'4040'`, `4040` or `{ host, port }`. */
export type UiOption =
  | string
  | number
  | {
      /** The host or address to listen on (default 127.0.0.1). */
      readonly host?: string;
      /** The port; 0 picks a free one. */
      readonly port: number;
    };

/** Loopback: the UI is private unless asked otherwise. */
export const UI_HOST_DEFAULT = '127.0.0.1';

const PORT_MAX = 65_535;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

/**
 * Parses and checks a UI address; anything else is an InvalidConfigError that says
 * what was wrong.
 *
 * @example
 * parseUiAddress('0.0.0.0:4040'); // { host: '0.0.0.0', port: 4040 }
 * parseUiAddress('4040'); // { host: '127.0.0.1', port: 4040 }
 */
export function parseUiAddress(value: UiOption): UiAddress {
  if (typeof value === 'number') return { host: UI_HOST_DEFAULT, port: checkPort(value, value) };
  if (value !== null && typeof value === 'object') {
    const host = value.host === undefined ? UI_HOST_DEFAULT : checkHost(value.host, value);
    return { host, port: checkPort(value.port, value) };
  }
  if (typeof value !== 'string') throw bad(value, 'a string host:port, a port number or { host, port }');
  const text = value.trim();
  if (text.includes('://')) throw bad(value, 'host:port, not a URL');
  if (/^\d+$/.test(text)) return { host: UI_HOST_DEFAULT, port: checkPort(Number(text), value) };
  const bracketed = /^\[([^\]]*)\]:(.*)$/.exec(text);
  const colon = text.lastIndexOf(':');
  if (bracketed === null && colon < 0) throw bad(value, 'host:port (the port is missing)');
  const host = bracketed ? (bracketed[1] as string) : text.slice(0, colon);
  const port = bracketed ? (bracketed[2] as string) : text.slice(colon + 1);
  if (!/^\d+$/.test(port)) throw bad(value, `a port from 0 to ${PORT_MAX} after the colon`);
  if (bracketed === null && host.includes(':')) throw bad(value, 'an IPv6 host in brackets, as [::1]:4040');
  return { host: host === '' ? UI_HOST_DEFAULT : checkHost(host, value), port: checkPort(Number(port), value) };
}

/**
 * The URL of a bound address, IPv6 hosts in brackets.
 *
 * @example
 * uiUrl({ host: '127.0.0.1', port: 4040 }); // 'http://127.0.0.1:4040/'
 */
export function uiUrl(address: UiAddress): string {
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `http://${host}:${address.port}/`;
}

function checkPort(port: unknown, input: unknown): number {
  if (typeof port !== 'number' || !Number.isSafeInteger(port) || port < 0 || port > PORT_MAX) {
    throw bad(input, `a port from 0 to ${PORT_MAX}`);
  }
  return port;
}

function checkHost(host: unknown, input: unknown): string {
  if (typeof host !== 'string' || !(HOSTNAME.test(host) || (host.includes(':') && IPV6.test(host)))) {
    throw bad(input, 'a host name or an IP address');
  }
  return host;
}

function bad(input: unknown, wanted: string): InvalidConfigError {
  return new InvalidConfigError(`ui: ${JSON.stringify(input) ?? String(input)} is not a valid address; expected ${wanted}`);
}
