/**
 * Shuffles: how records move between partitions for keyed and global operators.
 * Each has a map side (runs at the end of the fused chain of each input partition,
 * combining locally when it can) and a reduce side (one per output partition).
 */
import { concatAll } from '../../base/arrays.ts';
import type { MapSide, ShuffleSpec, Sink } from '../graph.ts';
import { KeyMap, partitionOf } from '../partitioner.ts';

function buckets(n: number): unknown[][] {
  return Array.from({ length: n }, () => []);
}

/**
 * `combineByKey(create, merge, mergeCombiners)`: the general keyed aggregation that
 * reduceByKey, groupByKey and countByValue are made of. Output records are `[K, C]`.
 * `acrossPartitions`: one combiner may take several map partitions (see ShuffleSpec).
 *
 * @example
 * combineByKeyShuffle<number, number>((v) => v, (a, b) => a + b, (a, b) => a + b, true)
 */
export function combineByKeyShuffle<V, C>(
  create: (value: V) => C,
  merge: (combiner: C, value: V) => C,
  mergeCombiners: (a: C, b: C) => C,
  acrossPartitions = false,
): ShuffleSpec {
  return {
    mapSide(_parent, _mapPartition, outPartitions): MapSide {
      // String and number keys (the common case) go to a plain Map of boxed combiners:
      // one lookup per record once a key is there (a get and a set would be two), and
      // no KeyMap checks; other keys to a KeyMap.
      const plain = new Map<unknown, { c: C }>();
      const structured = new KeyMap<unknown, C>();
      const sink: Sink<unknown> = (r) => {
        const pair = r as [unknown, V];
        const k = pair[0];
        const type = typeof k;
        if (type === 'string' || type === 'number') {
          const box = plain.get(k);
          if (box === undefined) plain.set(k, { c: create(pair[1]) });
          else box.c = merge(box.c, pair[1]);
        } else {
          const c = structured.get(k);
          structured.set(k, c === undefined && !structured.has(k) ? create(pair[1]) : merge(c as C, pair[1]));
        }
      };
      return { sink, finish: () => splitByKey(plain, structured, outPartitions) };
    },
    combinesAcrossPartitions: acrossPartitions,
    reduceSide(itemsPerParent, _time, oneCombiner) {
      // One combiner's items already hold each key once: nothing to merge.
      if (itemsPerParent.length === 1 && oneCombiner?.[0] === true) return itemsPerParent[0] as unknown[];
      const merged = new KeyMap<unknown, C>();
      for (const items of itemsPerParent) {
        for (const item of items) {
          const [k, c] = item as [unknown, C];
          const prev = merged.get(k);
          merged.set(k, prev === undefined && !merged.has(k) ? c : mergeCombiners(prev as C, c));
        }
      }
      return merged.toArray();
    },
  };
}

/** A combiner's entries (boxed in `plain`, as they are in `keyed`) as `[K, C]` items, by the partition that owns each key. */
function splitByKey<C>(plain: Map<unknown, { c: C }>, keyed: KeyMap<unknown, C>, outPartitions: number): unknown[][] {
  const out = buckets(outPartitions);
  if (outPartitions === 1) {
    const only = out[0] as unknown[];
    plain.forEach((box, k) => void only.push([k, box.c]));
    keyed.forEach((c, k) => void only.push([k, c]));
    return out;
  }
  plain.forEach((box, k) => void (out[partitionOf(k, outPartitions)] as unknown[]).push([k, box.c]));
  keyed.forEach((c, k) => void (out[partitionOf(k, outPartitions)] as unknown[]).push([k, c]));
  return out;
}

/**
 * Moves `[K, V]` records to the partition of their key, keeping their order (what
 * mapWithState needs: its function runs once per record, in order).
 */
export function partitionByKeyShuffle(): ShuffleSpec {
  return {
    mapSide(_parent, _mapPartition, outPartitions) {
      const out = buckets(outPartitions);
      return {
        sink: (r) => (out[partitionOf((r as [unknown, unknown])[0], outPartitions)] as unknown[]).push(r),
        finish: () => out,
      };
    },
    reduceSide: (itemsPerParent) => concatAll(itemsPerParent),
  };
}

/** `repartition(n)`: spreads records round-robin over `n` partitions, deterministically. */
export function repartitionShuffle(): ShuffleSpec {
  return {
    mapSide(_parent, mapPartition, outPartitions) {
      const out = buckets(outPartitions);
      let i = mapPartition;
      return {
        sink: (r) => {
          (out[i % outPartitions] as unknown[]).push(r);
          i++;
        },
        finish: () => out,
      };
    },
    reduceSide: (itemsPerParent) => concatAll(itemsPerParent),
  };
}

/**
 * A global aggregate into one partition: `count()` (an empty batch gives `[0]`) and
 * `reduce(f)` (an empty batch gives `[]`).
 */
export function aggregateShuffle<T, A>(
  zero: A | undefined,
  add: (acc: A | undefined, record: T) => A,
  combine: (a: A, b: A) => A,
): ShuffleSpec {
  return {
    mapSide() {
      let acc: A | undefined;
      let seen = false;
      return {
        sink: (r) => {
          acc = add(acc, r as T);
          seen = true;
        },
        finish: () => [seen ? [acc] : []],
      };
    },
    reduceSide(itemsPerParent) {
      const items = concatAll(itemsPerParent) as A[];
      if (items.length === 0) return zero === undefined ? [] : [zero];
      let acc = items[0] as A;
      for (let i = 1; i < items.length; i++) acc = combine(acc, items[i] as A);
      return [acc];
    },
  };
}

/**
 * `cogroup(other)`: for every key of either side, `[K, [V[], W[]]]`. The joins are
 * cogroup followed by a flatMap, exactly as in Spark.
 */
export function cogroupShuffle(sides: number): ShuffleSpec {
  return {
    mapSide(_parent, _mapPartition, outPartitions) {
      const grouped = new KeyMap<unknown, unknown[]>();
      const sink: Sink<unknown> = (r) => {
        const [k, v] = r as [unknown, unknown];
        const list = grouped.get(k);
        if (list === undefined) grouped.set(k, [v]);
        else list.push(v);
      };
      return { sink, finish: () => splitByKey(new Map(), grouped, outPartitions) };
    },
    reduceSide(itemsPerParent) {
      const merged = new KeyMap<unknown, unknown[][]>();
      itemsPerParent.forEach((items, side) => {
        for (const item of items) {
          const [k, values] = item as [unknown, unknown[]];
          let groups = merged.get(k);
          if (groups === undefined) {
            groups = Array.from({ length: sides }, () => []);
            merged.set(k, groups);
          }
          (groups[side] as unknown[]).push(...values);
        }
      });
      return merged.toArray();
    },
  };
}
