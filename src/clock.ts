// Where "now" comes from: the system clock in production, a fixed or hand-moved one in tests, so that a time
// a flow writes (a notice's changedAt) can be asserted without waiting or guessing.
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
