/**
 * The real nats-server launcher for tests; it lives in runtime/ because the chaos
 * runner starts (and kills) servers too.
 */
export { connectTo, NatsServerError, pickFreePorts, startNatsCluster, startNatsServer } from '../../runtime/nats-server-launcher.ts';
export type { NatsCluster, NatsClusterOptions, NatsServer, NatsServerOptions } from '../../runtime/nats-server-launcher.ts';
