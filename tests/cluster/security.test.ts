/**
 * A cluster on a NATS that asks for credentials and TLS: the driver and its
 * workers connect with a password, an nkey seed file and a CA file, the secrets
 * never show in what they print, a wrong password fails clearly; and two apps
 * sharing one NATS (same worker ids even) keep to their own subjects and buckets.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createUser } from '@nats-io/nkeys';
import test from 'ava';
import { redactNatsUrl } from '../../runtime/nats/nats-connection.ts';
import { BATCH_MS, type ClusterAppName } from '../helpers/cluster-apps.ts';
import { runOutputs, startWorker, startWorkers, stopWorkers } from '../helpers/cluster-kit.ts';
import { within } from '../helpers/jetstream-journal-kit.ts';
import { startNatsServer } from '../helpers/nats-server.ts';

const START_MS = 3_000_000 * BATCH_MS;
const BATCHES = 4;

function outputsOf(app: ClusterAppName, cluster?: { url: string; workers: number }): Promise<Map<string, unknown[]>> {
  return runOutputs(app, START_MS, BATCHES, cluster);
}

/** A CA and a server certificate for 127.0.0.1, made with openssl in `dir`. */
function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  const f = (name: string) => path.join(dir, name);
  const run = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  run(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
    '-days',
    '2',
    '-subj',
    '/CN=tributary-test-ca',
  );
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1');
  writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('server.pem'),
    '-days',
    '2',
    '-extfile',
    f('san.ext'),
  );
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

test('cluster - password, nkey seed and TLS files work for driver and workers, and no secret is printed', async (t) => {
  t.timeout(120_000);
  const dir = mkdtempSync(path.join(tmpdir(), 'tributary-tls-'));
  const password = 'pw-Zq81-secret';
  const user = createUser();
  const seed = new TextDecoder().decode(user.getSeed());
  const seedFile = path.join(dir, 'worker.nk');
  writeFileSync(seedFile, `${seed}\n`, { mode: 0o600 });
  const certs = makeCertificates(dir);
  const server = await startNatsServer({
    extraConfig: [
      `tls { cert_file: "${certs.cert}", key_file: "${certs.key}" }`,
      `authorization { users: [ { user: "alice", password: "${password}" }, { nkey: "${user.getPublicKey()}" } ] }`,
    ].join('\n'),
  });
  const hostPort = server.url.replace(/^nats:\/\//, '');
  const withPassword = `nats://alice:${password}@${hostPort}?tlsca=${encodeURIComponent(certs.ca)}`;
  const withNkey = `nats://${hostPort}?nkey=${encodeURIComponent(seedFile)}&tlsca=${encodeURIComponent(certs.ca)}`;
  const workers = [await startWorker(withPassword, 'windowed', 's1'), await startWorker(withNkey, 'windowed', 's2')];
  try {
    const local = await outputsOf('windowed');
    const cluster = await outputsOf('windowed', { url: withPassword, workers: 2 });
    t.true(local.size > 0);
    t.deepEqual(cluster, local);
    const wrong = await startWorker(withPassword.replace(password, 'not-the-password-77'), 'windowed', 's3', { wait: false });
    t.not(await within(wrong.exited, 30_000, 'the worker with a wrong password exiting'), 0);
    t.regex(wrong.stderr(), /authorization/i);
    for (const w of [...workers, wrong]) {
      t.false(w.stderr().includes(password), `${w.id} printed the password`);
      t.false(w.stderr().includes('not-the-password-77'), `${w.id} printed the wrong password`);
      t.false(w.stderr().includes(seed), `${w.id} printed the nkey seed`);
    }
    t.is(redactNatsUrl(`nats://alice:${password}@h:1?token=abc&replicas=3`), 'nats://alice:***@h:1?token=***&replicas=3');
    t.is(redactNatsUrl('nats://tok3n@h:1'), 'nats://***@h:1');
  } finally {
    await stopWorkers(workers);
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cluster - two apps on one NATS, with the same worker ids, each get their own results', async (t) => {
  t.timeout(120_000);
  const server = await startNatsServer();
  const a = await startWorkers(server.url, 'windowed', 2, 'same');
  const b = await startWorkers(server.url, 'join', 2, 'same');
  try {
    const [windowed, join] = await Promise.all([
      outputsOf('windowed', { url: server.url, workers: 2 }),
      outputsOf('join', { url: server.url, workers: 2 }),
    ]);
    t.deepEqual(windowed, await outputsOf('windowed'));
    t.deepEqual(join, await outputsOf('join'));
    t.true([...join.keys()].some((k) => k.startsWith('join@')));
  } finally {
    await stopWorkers([...a, ...b]);
    await server.stop();
  }
});
