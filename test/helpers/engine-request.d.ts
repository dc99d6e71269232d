// The engine's request context (what Provider.ctx reads), which the adapter's per-request reads are keyed on.
declare module 'oidc-provider/lib/helpers/als.js' {
  import type { AsyncLocalStorage } from 'node:async_hooks';
  const requestContext: AsyncLocalStorage<object>;
  export default requestContext;
}
