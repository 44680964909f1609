/**
 * Collects the nodes and outputs of one context's graph while the app builds it,
 * and refuses changes once the context started.
 */

import type { NatsConnection } from '@nats-io/transport-node';
import { InvalidGraphError } from '../base/errors.ts';
import type { GraphNode, NodeBase, OutputOp } from './graph.ts';

type NodeInit = Omit<NodeBase, 'id' | 'name' | 'params'> & {
  params?: Record<string, number | string | boolean>;
} & Record<string, unknown>;

/** The mutable graph behind a StreamingContext until `start()` freezes it. */
export class GraphBuilder {
  readonly nodes: GraphNode[] = [];
  readonly outputs: OutputOp[] = [];
  readonly batchDurationMs: number;
  readonly defaultPartitions: number;
  /** The app's name (sinks derive message ids from it). */
  appName = '';
  /** The context's shared NATS connection, for sinks (set by the context). */
  nats: () => Promise<NatsConnection> = () => Promise.reject(new Error('no NATS connection configured'));
  #frozen = false;
  #nextId = 1;

  constructor(batchDurationMs: number, defaultPartitions: number) {
    this.batchDurationMs = batchDurationMs;
    this.defaultPartitions = defaultPartitions;
  }

  /** Throws INVALID_GRAPH once the context started. */
  assertOpen(what: string): void {
    if (this.#frozen) {
      throw new InvalidGraphError(`cannot add ${what} after the StreamingContext started: build the whole graph before start()`);
    }
  }

  /** Adds a node and returns it with its id and display name. */
  add<N extends GraphNode>(init: NodeInit & { kind: N['kind'] }): N {
    this.assertOpen(String(init.operator));
    const id = this.#nextId++;
    const node = { ...init, id, name: `${init.operator}#${id}`, params: init.params ?? {} } as unknown as N;
    this.nodes.push(node);
    return node;
  }

  /** Registers an output operation. */
  addOutput(stream: GraphNode, operator: string, run: OutputOp['run']): void {
    this.assertOpen(operator);
    const id = this.#nextId++;
    this.outputs.push({ id, name: `${operator}#${id}`, stream, run });
  }

  /** Validates the whole graph and forbids further changes. */
  freeze(): void {
    if (this.outputs.length === 0) {
      throw new InvalidGraphError('no output operations registered: add print(), foreachBatch() or saveAsTextFiles() before start()');
    }
    const uids = new Map<string, GraphNode>();
    for (const node of this.nodes) {
      if (node.uid === undefined) continue;
      const other = uids.get(node.uid);
      if (other !== undefined) {
        throw new InvalidGraphError(`uid "${node.uid}" is used by two operators (${other.operator} and ${node.operator})`);
      }
      uids.set(node.uid, node);
    }
    this.#frozen = true;
  }

  get frozen(): boolean {
    return this.#frozen;
  }
}
