// What the web side's pages use from the rest of Gatehouse, named by their own types. The composition root
// (src/app.ts) passes the real ones; each area declares the part it uses (Pick<WebDependencies, ...>).
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import type { Database } from '../db/index.ts';
import type { AccountFlows } from '../accounts/flows/index.ts';
import type { ApiService } from '../apis/apis.ts';
import type { ConsentService } from '../accounts/consents.ts';
import type { SecondFactorService } from '../accounts/second-factor.ts';
import type { UserService } from '../accounts/users.ts';
import type { Limits } from '../limits/index.ts';
import type { AccountSessions } from '../oidc/account-sessions.ts';
import type { Engine } from '../oidc/engine-internals.ts';
import type { Store } from '../store/store.ts';
import type { AfterResponseWork } from './kit/after-response.ts';
import type { Views } from './kit/views.ts';

export interface WebDependencies {
  config: Config;
  logger: Logger;
  views: Views;
  /** Interactions, sessions and grants in the engine. */
  engine: Engine;
  /** The account workflows: the pages parse, call one, and render its answer. */
  flows: AccountFlows;
  /** Mail and audit records that must not hold up (or time) a page's answer. */
  afterResponseWork: AfterResponseWork;
  limits: Limits;
  users: UserService;
  secondFactor: SecondFactorService;
  /** What people allowed each application (the consent page adds to it). */
  consents: ConsentService;
  /** APIs, whose scopes the consent page puts in their own words. */
  apis: Pick<ApiService, 'find'>;
  accountSessions: AccountSessions;
  store: Store;
  /**
   * Asked by the forms that answer before their work (a reset or verification link, looked up and mailed after the
   * same answer for every address): a database that is down is then a 503, not a request lost after "check your email".
   */
  database: Pick<Database, 'ping'>;
}
