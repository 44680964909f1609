/**
 * A data-plane endpoint in a process of its own, for the flow-control test: it
 * receives on endpoint `receiver` of app `tt` and prints `got <n> <first byte> <length>`
 * for every message, in arrival order, after printing `ready`.
 *
 *   node --import tsx tests/helpers/transport-receiver.ts <nats url>
 */
import { connect } from '@nats-io/transport-node';
import { NatsTransport } from '../../actors/transport/nats.ts';

const nc = await connect({ servers: process.argv[2] as string });
const t = await NatsTransport.open(nc, 'tt', 'receiver');
t.onMessage((_from, m) => {
  if (m.type !== 'piece') return;
  const bytes = m.records[0] as Uint8Array;
  process.stdout.write(`got ${m.key} ${bytes[0]} ${bytes.length}\n`);
});
process.stdout.write('ready\n');
