// The second step of signing in, under /interaction/:uid/second-factor: an authenticator code, a recovery
// code, or enrollment when the second factor is required but not set up yet. The flow (accounts/flows/
// sign-in.ts) decides and audits; these pages read the form and show its answer. Every route reads the
// interaction through its cookie, so a pending step is usable only by the browser that gave the password.
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { Interaction } from '../../oidc/engine-internals.ts';
import type { CodeFailure, Enrollment } from '../../accounts/second-factor.ts';
import type { PendingSignIn } from '../../accounts/flows/sign-in.ts';
import type { User } from '../../accounts/users.ts';
import { formBody as form, formField, requireCsrf } from '../kit/pages.ts';
import { HttpError, TooManyAttempts } from '../kit/errors.ts';
import { enrollmentView } from '../kit/two-factor-display.ts';
import type { WebDependencies } from '../dependencies.ts';
import { unreadableSecretPage } from '../kit/unreadable-secret.ts';
import { pathTo, within } from '../paths.ts';
import { finishSignIn, signInRequest, type InteractionPages } from './interaction-pages.ts';

const ERRORS: Record<'totp' | 'recovery', Record<Exclude<CodeFailure, 'not_enabled'> | 'missing', string>> = {
  totp: {
    missing: 'Enter the 6-digit code your authenticator app shows now.',
    wrong: 'That code is not right. Enter the 6-digit code your authenticator app shows now.',
    used: 'That code was already used. Wait for the next code in your authenticator app and enter it.',
  },
  recovery: {
    missing: 'Enter one of your recovery codes.',
    wrong: 'That recovery code is not right, or it was already used.',
    used: 'That recovery code is not right, or it was already used.',
  },
};

/** The second factor's routes, under the interaction router (/interaction/:uid/second-factor). */
export function secondFactorRoutes(router: Router, deps: Pick<WebDependencies, 'logger' | 'flows' | 'afterResponseWork'>, pages: InteractionPages): void {
  const { signIn } = deps.flows;
  const unreadableSecret = unreadableSecretPage(deps.logger, (ctx, page) => pages.render(ctx, 'error', { ...page }, undefined, 503));

  function toStep(ctx: Context, uid: string): void {
    ctx.status = 303;
    ctx.redirect(pathTo('secondFactor', { uid }));
  }

  function toLogin(ctx: Context, uid: string): void {
    ctx.status = 303;
    ctx.redirect(pathTo('interaction', { uid }));
  }

  /** The interaction and its pending step; undefined after answering (sent back to the login page). */
  async function current(ctx: Context): Promise<{ interaction: Interaction; step: PendingSignIn } | undefined> {
    const interaction = await pages.details(ctx);
    if (ctx.method === 'POST') requireCsrf(ctx);
    if (interaction.prompt.name !== 'login') throw new HttpError(400, 'You are already signed in. Go back to the application.');
    const step = await signIn.pendingStep(signInRequest(ctx, interaction));
    if (step) return { interaction, step };
    // The sign-in was finished by another submit of this step (a double click): go on with it, as that one does.
    if (interaction.result?.login) {
      ctx.status = 303;
      ctx.redirect(interaction.returnTo);
    } else {
      toLogin(ctx, interaction.uid);
    }
    return undefined;
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

  router.get(within('interaction', 'secondFactor'), unreadableSecret, async (ctx) => {
    const found = await current(ctx);
    if (!found) return;
    const { interaction, step } = found;
    const page = await signIn.page(step);
    switch (page.show) {
      case 'recovery_codes':
        pages.render(ctx, 'second-factor-recovery-codes', { clientName: await pages.clientName(interaction.params.client_id) }, interaction.params.redirect_uri);
        return;
      case 'code':
        await renderCodePage(ctx, interaction, step.user, ctx.query.method === 'recovery' ? 'recovery' : 'totp');
        return;
      case 'enrollment':
        await renderEnrollPage(ctx, interaction, step.user, page.enrollment);
        return;
      case 'password':
        toLogin(ctx, interaction.uid);
        return;
      case 'changed':
        throw new HttpError(409, 'Two-factor authentication was just changed for this account. Go back to the application and sign in again.');
    }
  });

  router.post(within('interaction', 'secondFactor'), unreadableSecret, form, async (ctx) => {
    const found = await current(ctx);
    if (!found) return;
    const { interaction, step } = found;
    const method = formField(ctx, 'method') === 'recovery' ? 'recovery' : 'totp';
    const result = await signIn.enterCode(step, method, formField(ctx, 'code'), finishSignIn(ctx, pages));
    if (result.ok) return;
    switch (result.reason) {
      case 'too_many_attempts': throw new TooManyAttempts(result.refusal);
      // Turned off meanwhile (or never on): the step shows enrollment if it is required.
      case 'not_enabled': return toStep(ctx, interaction.uid);
      case 'stale': return toLogin(ctx, interaction.uid);
      default: return renderCodePage(ctx, interaction, step.user, method, ERRORS[method][result.reason], result.reason === 'missing' ? 400 : 401);
    }
  });

  router.post(within('interaction', 'secondFactorEnroll'), unreadableSecret, form, async (ctx) => {
    const found = await current(ctx);
    if (!found) return;
    const { interaction, step } = found;
    const result = await signIn.confirmEnrollment(step, formField(ctx, 'code'));
    if (result.ok) {
      pages.render(ctx, 'second-factor-recovery-codes', {
        clientName: await pages.clientName(interaction.params.client_id), recoveryCodes: result.recoveryCodes,
      }, interaction.params.redirect_uri);
      deps.afterResponseWork.run(ctx, 'two-factor change notice', result.notice);
      return;
    }
    switch (result.reason) {
      case 'too_many_attempts': throw new TooManyAttempts(result.refusal);
      // No enrollment to confirm any more (confirmed or restarted elsewhere): start the step again.
      case 'restart': return toStep(ctx, interaction.uid);
      default: return renderEnrollPage(ctx, interaction, step.user, result.enrollment, ERRORS.totp[result.reason], result.reason === 'missing' ? 400 : 401);
    }
  });

  router.post(within('interaction', 'secondFactorContinue'), form, async (ctx) => {
    const found = await current(ctx);
    if (!found) return;
    const { interaction, step } = found;
    const result = await signIn.continueAfterEnrollment(step, finishSignIn(ctx, pages));
    if (result.ok) return;
    if (result.reason === 'not_confirmed') toStep(ctx, interaction.uid);
    else toLogin(ctx, interaction.uid);
  });
}
