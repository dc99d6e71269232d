// Account console: password (being built).
import type { Runtime } from '../runtime.ts';
import type { AccountPages, AccountRouter } from './index.ts';

export function passwordRoutes(_router: AccountRouter, _runtime: Runtime, _pages: AccountPages): void {
}
