// How long until something may be tried again, in the words pages and mail use.

/** "in 45 seconds", "in 2 minutes", "in 1 hour": rounded up, so the person never comes back too early. */
export function inWords(seconds: number): string {
  const plural = (count: number, unit: string) => `${count} ${unit}${count === 1 ? '' : 's'}`;
  if (seconds < 60) return `in ${plural(Math.max(1, Math.ceil(seconds)), 'second')}`;
  if (seconds < 3600) return `in ${plural(Math.ceil(seconds / 60), 'minute')}`;
  if (seconds < 2 * 86_400) return `in ${plural(Math.ceil(seconds / 3600), 'hour')}`;
  return `in ${plural(Math.ceil(seconds / 86_400), 'day')}`;
}
