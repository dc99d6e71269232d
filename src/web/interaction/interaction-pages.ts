// What the pages under /interaction/:uid share: reading the interaction, rendering within it, ending it in
// the engine, and the sign-in flow's view of it. index.ts makes them; the second-factor step and sign-up use them.
import { decodeJwt } from 'jose';
import type { Context } from 'koa';
import type { InteractionResults } from 'oidc-provider';
import type { FinishSignIn, SignInRequest } from '../../accounts/flows/sign-in.ts';
import type { Interaction } from '../../oidc/engine-internals.ts';
import { ACR_PASSWORD, ACR_SECOND_FACTOR, AMR_PASSWORD, AMR_SECOND_FACTOR } from '../../oidc/assurance.ts';

/** What the interaction router (index.ts) lends its steps (second factor, sign-up): the same rendering and finishing. */
export interface InteractionPages {
  details(ctx: Context): Promise<Interaction>;
  render(ctx: Context, template: string, data: Record<string, unknown>, redirectUri: unknown, status?: number): void;
  finish(ctx: Context, result: InteractionResults, mergeWithLastSubmission: boolean): Promise<void>;
  clientName(clientId: unknown): Promise<string>;
}

/** The flow's view of the sign-in this request serves. */
export function signInRequest(ctx: Context, interaction: Interaction): SignInRequest {
  const { session } = interaction;
  return {
    id: interaction.uid, expiresAt: interaction.exp ?? 0, clientId: String(interaction.params.client_id), acrValues: interaction.params.acr_values,
    session: session?.uid && session.accountId ? { uid: session.uid, accountId: session.accountId } : undefined,
    expectedAccountId: subjectOfHint(interaction.params.id_token_hint),
    ip: ctx.ip, userAgent: ctx.get('user-agent'),
  };
}

/** The subject of the request's id_token_hint, which the engine verified when the request came. */
function subjectOfHint(hint: unknown): string | undefined {
  if (typeof hint !== 'string') return undefined;
  try {
    const { sub } = decodeJwt(hint);
    return typeof sub === 'string' ? sub : undefined;
  } catch {
    return undefined;
  }
}

/** Ends the sign-in in the engine, as the flow says, and sends the browser on. */
export function finishSignIn(ctx: Context, pages: InteractionPages): FinishSignIn {
  return (accountId, strength) => pages.finish(ctx, {
    login: strength === 'password' ? { accountId, amr: AMR_PASSWORD, acr: ACR_PASSWORD } : { accountId, amr: AMR_SECOND_FACTOR, acr: ACR_SECOND_FACTOR },
  }, false);
}
