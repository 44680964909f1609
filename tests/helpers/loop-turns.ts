/**
 * Counting the event loop's turns in a test: how a test shows that work yields
 * instead of running in one synchronous go.
 */

/**
 * A counter of the event loop's turns: a setImmediate that re-arms itself runs once
 * per turn, so code that runs in one synchronous go leaves it unchanged however fast
 * the machine is. (How long each turn takes is a benchmark's business, not a test's.)
 */
export function loopTurns(): { readonly count: () => number; stop(): void } {
  let turns = 0;
  let running = true;
  const tick = (): void => {
    if (!running) return;
    turns++;
    setImmediate(tick);
  };
  setImmediate(tick);
  return {
    count: () => turns,
    stop: () => {
      running = false;
    },
  };
}
