// The second step of signing in, under /interaction/:uid/second-factor: after the password (or, for a
// step-up, an earlier session's password) an authenticator code or a recovery code; and when the second
// factor is required but not set up yet, enrollment inside the sign-in (as Keycloak's CONFIGURE_TOTP),
// which always asks the password of this sign-in first.
//
// "Password verified for account X" is kept server-side in the store, under the interaction's uid, for
// the interaction's remaining lifetime — not in provider.interactionResult: a stored result is applied by
// the engine's resume endpoint (/auth/:uid) to whoever opens it, which would sign in on the password
// alone. Every route here also reads the interaction through its cookie, so the state is usable only by
// the browser that gave the password.
import type Router from '@koa/router';
import type { Context, Next } from 'koa';
import type { Interaction } from '../oidc/engine-internals.ts';
import type { InteractionResults } from 'oidc-provider';
import { SecondFactorUnreadable, type CodeFailure, type Enrollment } from '../accounts/second-factor.ts';
import type { User } from '../accounts/users.ts';
import { afterResponse } from '../http/after-response.ts';
import { formBody as form, formField, requireCsrf, type Refusal } from '../http/pages.ts';
import { FORGOT_PASSWORD_PATH } from '../http/password-forms.ts';
import { HttpError, TooManyAttempts } from '../http/errors.ts';
import { enrollmentView } from '../http/two-factor-display.ts';
import {
  ACR_PASSWORD, ACR_SECOND_FACTOR, AMR_PASSWORD, AMR_SECOND_FACTOR, SECOND_FACTOR_REQUIRED, secondFactorDecision,
} from '../oidc/assurance.ts';
import type { Runtime } from '../runtime.ts';


/** What the interaction routes (routes.ts) lend this step and sign-up: the same page rendering and finishing. */
export interface InteractionPages {
  details(ctx: Context): Promise<Interaction>;
  render(ctx: Context, template: string, data: Record<string, unknown>, redirectUri: unknown, status?: number): void;
  finish(ctx: Context, result: InteractionResults, mergeWithLastSubmission: boolean): Promise<void>;
  clientName(clientId: unknown): Promise<string>;
}

/** The sign-in's state between the password and the second factor. */
interface PendingStep {
  accountId: string;
  /**
   * The account's security version when the first factor was shown: a change of password, email or second
   * factor, or a sign-out everywhere, since then ends this sign-in (checked at every step and at the end).
   */
  securityVersion: number;
  /** How the first factor was shown: the password in this sign-in, or an earlier session's (step-up). */
  via: 'password' | 'session';
  /** Enrollment started in this sign-in: the account's unconfirmed secret is the one shown here. */
  enrolling?: boolean;
  /** Enrollment confirmed and recovery codes shown: "Continue" finishes the sign-in. */
  confirmed?: boolean;
}

const ERRORS: Record<'totp' | 'recovery', Record<CodeFailure, string>> = {
  totp: {
    wrong: 'That code is not right. Enter the 6-digit code your authenticator app shows now.',
    used: 'That code was already used. Wait for the next code in your authenticator app and enter it.',
    not_enabled: 'Two-factor authentication is not set up for this account.',
  },
  recovery: {
    wrong: 'That recovery code is not right, or it was already used.',
    used: 'That recovery code is not right, or it was already used.',
    not_enabled: 'Two-factor authentication is not set up for this account.',
  },
};

/**
 * What the login page does after asking the step: `redirected` (sent to the second factor, nothing more
 * to do), or show the login page, with `email` filled in when the signed-in account must give its
 * password again before setting up a second factor.
 */
export type StepUp = { redirected: true } | { redirected: false; email?: string };

export interface SecondFactorStep {
  /**
   * After a right password: finishes the sign-in ('signed_in'), or goes on to the second factor when this
   * sign-in needs it ('second_factor'; the step audits the login when it completes).
   */
  afterPassword(ctx: Context, user: Pick<User, 'id' | 'securityVersion'>): Promise<'signed_in' | 'second_factor'>;
  /**
   * For the login page: when the session is still signed in and only the second factor is missing
   * (step-up), and that account has one set up, goes straight to the code for the session's account.
   */
  stepUpSignedInSession(ctx: Context, interaction: Interaction): Promise<StepUp>;
  /** Forgets the sign-in's state between the password and the second factor (the sign-in was cancelled). */
  forgetPending(uid: string): Promise<void>;
  /** Adds the second-factor routes to the interaction router. */
  addRoutes(router: Router): void;
}

/** A second factor that cannot be checked: not the person's doing, and someone knows. */
const UNREADABLE_SECRET_PAGE = {
  title: 'Two-factor authentication is unavailable',
  message: 'Two-factor authentication cannot be checked right now; the administrator has been told. Please try again later.',
} as const;

/**
 * Middleware for routes that check a second factor whose sealed secret no configured key opens: the person
 * gets a 503 page from `showPage`, the operator an error line naming the account and the cause (never the
 * secret), to restore the key to ENCRYPTION_KEYS or reset the person's second factor
 * (`gatehouse users reset-second-factor`).
 */
export function unreadableSecretPage(
  logger: Runtime['logger'], showPage: (ctx: Context, page: typeof UNREADABLE_SECRET_PAGE) => void,
): (ctx: Context, next: Next) => Promise<void> {
  return async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      if (!(error instanceof SecondFactorUnreadable)) throw error;
      logger.error({ accountId: error.accountId, cause: (error.cause as Error).message, path: ctx.path },
        'two-factor authentication cannot be checked: the account\'s sealed TOTP secret does not open with ENCRYPTION_KEYS');
      showPage(ctx, UNREADABLE_SECRET_PAGE);
    }
  };
}

/** A change to a person's second factor, told to their address (views/mail/*\/second-factor-changed.eta). */
export type SecondFactorChange = 'enabled' | 'disabled' | 'recovery_codes_renewed';

/**
 * Mails the account's address that its second factor changed, after the response (neither its delay nor a
 * mail server outage reaches the page). "Not you?" leads to a password reset: the change needed the password.
 */
export function sendSecondFactorNotice(ctx: Context, runtime: Runtime, user: Pick<User, 'email'>, change: SecondFactorChange): void {
  afterResponse(ctx, runtime.logger, 'two-factor change notice', () => runtime.mailQueue.deliver({
    to: user.email, template: 'second-factor-changed',
    data: { change, changedAt: new Date(), link: `${runtime.config.issuer}${FORGOT_PASSWORD_PATH}` },
  }));
}

export function secondFactorStep(runtime: Runtime, pages: InteractionPages): SecondFactorStep {
  const { engine, secondFactor, users, store, auditTrail } = runtime;
  const guard = runtime.limits.secondFactor;

  const pendingKey = (uid: string) => `second-factor-step:${uid}`;

  async function forgetPending(uid: string): Promise<void> {
    await store.delete([pendingKey(uid)]);
  }

  /**
   * The interaction keeps a copy of the session taken when the sign-in started. It stands for the first
   * factor only while that session is still signed in as the same account: not once it was ended ("sign
   * out everywhere", a password reset, the sessions page) or signed out. (oidc-provider's
   * interactionDetails refuses a vanished session too; this step does not rely on it.)
   */
  async function sessionStillSignedIn(interaction: Interaction, accountId: string): Promise<boolean> {
    const uid = interaction.session?.uid;
    if (!uid) return false;
    const session = await engine.sessionByUid(uid);
    return session !== undefined && session.accountId === accountId;
  }

  const unreadableSecret = unreadableSecretPage(runtime.logger, (ctx, page) => pages.render(ctx, 'error', { ...page }, undefined, 503));

  async function savePending(interaction: Interaction, pending: PendingStep): Promise<void> {
    const remaining = (interaction.exp ?? 0) - Math.floor(Date.now() / 1000);
    if (remaining <= 0) throw new HttpError(400, 'This sign-in has expired. Go back to the application and sign in again.');
    await store.put(pendingKey(interaction.uid), JSON.stringify(pending), remaining);
  }

  async function loadPending(uid: string): Promise<PendingStep | undefined> {
    const record = await store.get(pendingKey(uid));
    return record ? JSON.parse(record.value) as PendingStep : undefined;
  }

  function toStep(ctx: Context, uid: string, query = ''): void {
    ctx.status = 303;
    ctx.redirect(`/interaction/${uid}/second-factor${query}`);
  }

  function toLogin(ctx: Context, uid: string): void {
    ctx.status = 303;
    ctx.redirect(`/interaction/${uid}`);
  }

  function seen(ctx: Context, interaction: Interaction, user: User) {
    return {
      subjectUserId: user.id, subjectEmail: user.email, ip: ctx.ip, userAgent: ctx.get('user-agent'),
      clientId: String(interaction.params.client_id),
    };
  }

  /** The interaction, its pending step and its account; undefined after answering (sent back to the login page). */
  async function current(ctx: Context): Promise<{ interaction: Interaction; pending: PendingStep; user: User } | undefined> {
    const interaction = await pages.details(ctx);
    if (ctx.method === 'POST') requireCsrf(ctx);
    if (interaction.prompt.name !== 'login') throw new HttpError(400, 'You are already signed in. Go back to the application.');
    const pending = await loadPending(interaction.uid);
    const user = pending ? await users.findById(pending.accountId) : null;
    const firstFactorStands = pending?.via === 'password' || (pending !== undefined && await sessionStillSignedIn(interaction, pending.accountId));
    if (!pending || !user || user.disabled || !firstFactorStands || !await stillCurrent(ctx, interaction, pending, user)) {
      if (pending) await forgetPending(interaction.uid);
      toLogin(ctx, interaction.uid);
      return undefined;
    }
    return { interaction, pending, user };
  }

  /**
   * Whether the account's credentials are still those this sign-in began with; a stale step is audited (the
   * password it was given was the old one, or someone signed the account out everywhere meanwhile).
   */
  async function stillCurrent(ctx: Context, interaction: Interaction, pending: PendingStep, user: User): Promise<boolean> {
    if (user.securityVersion === pending.securityVersion) return true;
    await auditTrail.record({
      action: 'login.failed', outcome: 'failure', ...seen(ctx, interaction, user),
      detail: { reason: 'credentials_changed', during: pending.confirmed ? 'recovery_codes' : pending.enrolling ? 'enrollment' : 'second_factor' },
    });
    return false;
  }

  /**
   * The sign-in is complete once the second factor is: that is when it is audited as a login. The account is
   * read once more first: a reset that landed while the code was being checked ends this sign-in too.
   */
  async function complete(ctx: Context, interaction: Interaction, pending: PendingStep, user: User): Promise<void> {
    const now = await users.findById(user.id);
    if (!now || now.disabled || !await stillCurrent(ctx, interaction, pending, now)) {
      await forgetPending(interaction.uid);
      toLogin(ctx, interaction.uid);
      return;
    }
    await forgetPending(interaction.uid);
    await pages.finish(ctx, { login: { accountId: user.id, amr: AMR_SECOND_FACTOR, acr: ACR_SECOND_FACTOR } }, false);
    await auditTrail.record({ action: 'login.succeeded', outcome: 'success', ...seen(ctx, interaction, user), detail: { amr: AMR_SECOND_FACTOR } });
  }

  async function renderCodePage(ctx: Context, interaction: Interaction, user: User, method: 'totp' | 'recovery', error?: string, status = 200): Promise<void> {
    pages.render(ctx, 'second-factor', {
      clientName: await pages.clientName(interaction.params.client_id), email: user.email, method, error,
    }, interaction.params.redirect_uri, status);
  }

  async function renderEnrollPage(ctx: Context, interaction: Interaction, user: User, enrollment: Enrollment, error?: string, status = 200): Promise<void> {
    pages.render(ctx, 'second-factor-enroll', {
      clientName: await pages.clientName(interaction.params.client_id), email: user.email, error, ...await enrollmentView(enrollment),
    }, interaction.params.redirect_uri, status);
  }

  /** The enrollment this sign-in shows: the one it started (same QR code on reload), or a new one. */
  async function enrollmentFor(interaction: Interaction, pending: PendingStep): Promise<Enrollment | undefined> {
    const started = pending.enrolling ? await secondFactor.pendingEnrollment(pending.accountId) : undefined;
    if (started) return started;
    const enrollment = await secondFactor.startEnrollment(pending.accountId);
    if (enrollment) await savePending(interaction, { ...pending, enrolling: true });
    return enrollment;
  }

  /** A refused code: counted (lockout), audited, then the 429 page or the form again with the error. */
  async function refuse(ctx: Context, interaction: Interaction, user: User, reason: CodeFailure, method: 'totp' | 'recovery', during: 'sign_in' | 'enrollment'): Promise<Refusal | undefined> {
    const after = await guard.afterFailure({ accountId: user.id, ip: ctx.ip });
    await auditTrail.record({
      action: 'second_factor.failed', outcome: 'failure', ...seen(ctx, interaction, user),
      detail: { method: method === 'recovery' ? 'recovery_code' : 'totp', reason, during, ...(!after.allowed && after.lockedNow ? { lockedSeconds: after.retryAfterSeconds } : {}) },
    });
    if (!after.allowed) await auditLockout(ctx, interaction, user, after);
    return after.allowed ? undefined : after;
  }

  /** The moment the second factor is locked is an event of its own, as the password's lockout is. */
  async function auditLockout(ctx: Context, interaction: Interaction, user: User, refusal: Refusal): Promise<void> {
    if (refusal.lockedNow) await auditTrail.record({ action: 'second_factor.locked_out', outcome: 'failure', ...seen(ctx, interaction, user), detail: { seconds: refusal.retryAfterSeconds } });
  }

  return {
    async afterPassword(ctx, { id: accountId, securityVersion }) {
      const interaction = await pages.details(ctx);
      const client = await engine.findClient(interaction.params.client_id);
      const decision = await secondFactorDecision(
        (id) => secondFactor.loginRequirement(id),
        { accountId, client, acrValues: interaction.params.acr_values },
      );
      if (!decision.required) {
        await forgetPending(interaction.uid);
        await pages.finish(ctx, { login: { accountId, amr: AMR_PASSWORD, acr: ACR_PASSWORD } }, false);
        return 'signed_in';
      }
      await savePending(interaction, { accountId, securityVersion, via: 'password' });
      toStep(ctx, interaction.uid);
      return 'second_factor';
    },

    async stepUpSignedInSession(ctx, interaction) {
      const { prompt, session } = interaction;
      // "Sign in as someone else" asks for an email and password instead.
      if (ctx.query.account === 'other' || !session?.accountId) return { redirected: false };
      if (prompt.reasons.length !== 1 || prompt.reasons[0] !== SECOND_FACTOR_REQUIRED) return { redirected: false };
      const pending = await loadPending(interaction.uid);
      if (!await sessionStillSignedIn(interaction, session.accountId)) {
        if (pending?.via === 'session') await forgetPending(interaction.uid);
        return { redirected: false };
      }
      // Setting up a second factor asks the password of this sign-in: a borrowed, signed-in browser must not
      // enroll its own authenticator and lock the owner out. A code of one already set up needs no password.
      const { enabled } = await secondFactor.loginRequirement(session.accountId);
      const passwordGiven = pending?.via === 'password' && pending.accountId === session.accountId;
      const account = await users.findById(session.accountId);
      if (!account) return { redirected: false };
      if (!enabled && !passwordGiven) return { redirected: false, email: account.email };
      if (pending?.accountId !== session.accountId) await savePending(interaction, { accountId: session.accountId, securityVersion: account.securityVersion, via: 'session' });
      toStep(ctx, interaction.uid);
      return { redirected: true };
    },

    forgetPending,

    addRoutes(router) {
      router.get('/second-factor', unreadableSecret, async (ctx) => {
        const step = await current(ctx);
        if (!step) return;
        const { interaction, pending, user } = step;
        if (pending.confirmed) {
          pages.render(ctx, 'second-factor-recovery-codes', { clientName: await pages.clientName(interaction.params.client_id) }, interaction.params.redirect_uri);
          return;
        }
        const { enabled } = await secondFactor.loginRequirement(user.id);
        if (enabled) {
          await renderCodePage(ctx, interaction, user, ctx.query.method === 'recovery' ? 'recovery' : 'totp');
          return;
        }
        if (pending.via !== 'password') {
          // Turned off since the step-up began: setting it up asks the password (the login page).
          await forgetPending(interaction.uid);
          toLogin(ctx, interaction.uid);
          return;
        }
        const enrollment = await enrollmentFor(interaction, pending);
        if (!enrollment) throw new HttpError(409, 'Two-factor authentication was just changed for this account. Go back to the application and sign in again.');
        await renderEnrollPage(ctx, interaction, user, enrollment);
      });

      router.post('/second-factor', unreadableSecret, form, async (ctx) => {
        const step = await current(ctx);
        if (!step) return;
        const { interaction, pending, user } = step;
        const method = formField(ctx, 'method') === 'recovery' ? 'recovery' : 'totp';
        const attempt = { accountId: user.id, ip: ctx.ip };
        const before = await guard.beforeAttempt(attempt);
        if (!before.allowed) {
          await auditLockout(ctx, interaction, user, before);
          throw new TooManyAttempts(before);
        }
        const code = formField(ctx, 'code');
        const result = method === 'recovery' ? await secondFactor.useRecoveryCode(user.id, code) : await secondFactor.verifyCode(user.id, code);
        if (!result.ok && result.reason === 'not_enabled') {
          // Turned off meanwhile (or never on): the step shows enrollment if it is required.
          toStep(ctx, interaction.uid);
          return;
        }
        if (!result.ok) {
          const refusal = await refuse(ctx, interaction, user, result.reason, method, 'sign_in');
          if (refusal) {
            throw new TooManyAttempts(refusal);
          }
          await renderCodePage(ctx, interaction, user, method, ERRORS[method][result.reason], 401);
          return;
        }
        await guard.afterSuccess(attempt);
        await auditTrail.record(result.method === 'recovery_code'
          ? { action: 'recovery_code.used', outcome: 'success', ...seen(ctx, interaction, user), detail: { remaining: result.recoveryCodesLeft, during: 'sign_in' } }
          : { action: 'second_factor.used', outcome: 'success', ...seen(ctx, interaction, user), detail: { method: 'totp', via: pending.via } });
        await complete(ctx, interaction, pending, user);
      });

      router.post('/second-factor/enroll', unreadableSecret, form, async (ctx) => {
        const step = await current(ctx);
        if (!step) return;
        const { interaction, pending, user } = step;
        if (!pending.enrolling || pending.via !== 'password') {
          toStep(ctx, interaction.uid);
          return;
        }
        const attempt = { accountId: user.id, ip: ctx.ip };
        const before = await guard.beforeAttempt(attempt);
        if (!before.allowed) {
          await auditLockout(ctx, interaction, user, before);
          throw new TooManyAttempts(before);
        }
        const result = await secondFactor.confirmEnrollment(user.id, formField(ctx, 'code'), { whileSecurityVersion: pending.securityVersion });
        if (!result.ok) {
          const enrollment = result.reason === 'not_enabled' ? undefined : await secondFactor.pendingEnrollment(user.id);
          if (!enrollment) {
            // No enrollment to confirm any more (confirmed or restarted elsewhere): start the step again.
            toStep(ctx, interaction.uid);
            return;
          }
          const refusal = await refuse(ctx, interaction, user, result.reason, 'totp', 'enrollment');
          if (refusal) {
            throw new TooManyAttempts(refusal);
          }
          await renderEnrollPage(ctx, interaction, user, enrollment, ERRORS.totp[result.reason], 401);
          return;
        }
        await guard.afterSuccess(attempt);
        await auditTrail.record({ action: 'second_factor.enrolled', outcome: 'success', ...seen(ctx, interaction, user), detail: { method: 'totp', during: 'sign_in' } });
        // Enrolling changed the account's security version: this sign-in goes on with the new one.
        await savePending(interaction, { ...pending, confirmed: true, securityVersion: result.securityVersion });
        pages.render(ctx, 'second-factor-recovery-codes', {
          clientName: await pages.clientName(interaction.params.client_id), recoveryCodes: result.recoveryCodes,
        }, interaction.params.redirect_uri);
        sendSecondFactorNotice(ctx, runtime, user, 'enabled');
      });

      router.post('/second-factor/continue', form, async (ctx) => {
        const step = await current(ctx);
        if (!step) return;
        const { interaction, pending, user } = step;
        if (!pending.confirmed) {
          toStep(ctx, interaction.uid);
          return;
        }
        await complete(ctx, interaction, pending, user);
      });
    },
  };
}
