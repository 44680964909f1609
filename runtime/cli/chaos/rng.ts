/**
 * The chaos runner's seeded PRNG, kept in runtime/base so that the test kit's kill
 * plans draw from the same sequence.
 */
export { seededRandom } from '../../base/seeded-random.ts';
