// Where "now" comes from: the system clock in production, a fixed or hand-moved one in tests, so that a time
// a flow writes (a notice's changedAt) can be asserted without waiting or guessing.
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/**
 * Whether a moment is one the database can store and compare: years 1 to 9999, as ISO 8601 writes them
 * (PostgreSQL refuses year 0, and a time zone's offset can push a far moment out of its range).
 */
export function isStorableMoment(moment: Date): boolean {
  const year = moment.getUTCFullYear();
  return year >= 1 && year <= 9999;
}
