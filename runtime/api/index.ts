/**
 * The public surface of Tributary (`import ... from 'tributary-streams'`).
 *
 * @module tributary-streams
 */

export type { CheckpointStats, OperatorCheckpointStats } from '../../actors/checkpointer.ts';
export type { BatchInfo } from '../../actors/driver.ts';
export type { FailedOverInfo, RebalancedInfo } from '../../actors/reassignment.ts';
export type { GeneratorStreamOptions } from '../../actors/receivers/generator.ts';
export type { JetStreamStreamOptions } from '../../actors/receivers/jetstream.ts';
export type { NatsStreamOptions } from '../../actors/receivers/nats.ts';
export type { QueueStreamOptions } from '../../actors/receivers/queue.ts';
export { Receiver } from '../../actors/receivers/receiver.ts';
export type { SocketTextStreamOptions } from '../../actors/receivers/socket.ts';
export type { TextFileStreamOptions } from '../../actors/receivers/text-file.ts';
export type { TextLineOptions } from '../../actors/receivers/text-generator.ts';
export { textLine, wordOf } from '../../actors/receivers/text-generator.ts';
export type { ActorSystem } from '../../actors/system.ts';
export { startActorSystem } from '../../actors/system.ts';
export type { TransportStats } from '../../actors/transport/nats.ts';
export type { CancelTimer, Clock } from '../base/clock.ts';
export { SystemClock } from '../base/clock.ts';
export { milliseconds, minutes, seconds } from '../base/durations.ts';
export type { ErrorCode } from '../base/errors.ts';
export {
  BatchFailedError,
  CorruptCheckpointError,
  FencedError,
  IncompatibleCheckpointError,
  InvalidConfigError,
  InvalidDurationError,
  InvalidGraphError,
  InvalidStateError,
  InvalidTransformResultError,
  SourceFailedError,
  TributaryError,
} from '../base/errors.ts';
export type { Logger } from '../base/logger.ts';
export type { DeadLetter, RecordErrorPolicy } from '../graph/graph.ts';
export type { MapWithStateFn, MapWithStateSpec } from '../graph/operators/map-with-state.ts';
export { State } from '../graph/operators/map-with-state.ts';
export type { UpdateFn, UpdateInfo } from '../graph/operators/update-state-by-key.ts';
export { canonicalKey, partitionOf, stableHash } from '../graph/partitioner.ts';
export type { PidOptions } from '../graph/rate-controller.ts';
export type { Decoder, Encoder } from '../nats/decoders.ts';
export type { NatsOptions } from '../nats/nats-connection.ts';
export type { UiOption } from '../ui/ui-address.ts';
export type { App, AppOptions } from './app.ts';
export { defineApp } from './app.ts';
export type {
  MapWithStateOptions,
  PartitionOptions,
  ReducedWindowOptions,
  UpdateStateOptions,
} from './dstream.ts';
export { DStream, MapWithStateDStream } from './dstream.ts';
export type { ToJetStreamOptions } from './jetstream-sink.ts';
export { deadLetterSubject } from './record-dead-letters.ts';
export type {
  BackpressureOptions,
  ClusterConfig,
  ClusterWorker,
  Lifecycle,
  StreamingContextConfig,
  StreamingListener,
} from './streaming-context.ts';
export { StreamingContext } from './streaming-context.ts';
