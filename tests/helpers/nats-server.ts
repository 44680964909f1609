/**
 * The real nats-server launcher for tests; it lives in runtime/cli/ because the chaos
 * runner starts (and kills) servers too.
 */

export type { NatsCluster, NatsClusterOptions, NatsServer, NatsServerOptions } from '../../runtime/cli/nats-server-launcher.ts';
export { connectTo, NatsServerError, pickFreePorts, startNatsCluster, startNatsServer } from '../../runtime/cli/nats-server-launcher.ts';
