// Levels of assurance: the acr values Gatehouse issues, and when a sign-in must include the second factor
// (the account has one, its role requires one, the client requires one, or the request asks for loa:2).
// The interaction policy (step-up) and the login pages decide with the same function, so they agree.
import type { LoginRequirement } from '../accounts/second-factor.ts';
import { SIGN_IN_METHODS } from '../accounts/flows/sign-in.ts';

/** Password only. */
export const ACR_PASSWORD = 'urn:gatehouse:loa:1';
/** Password and a second factor (an authenticator code or a recovery code). */
export const ACR_SECOND_FACTOR = 'urn:gatehouse:loa:2';
export const ACR_VALUES = [ACR_PASSWORD, ACR_SECOND_FACTOR] as const;

/** RFC 8176 method references: a password, then a one-time password (authenticator or recovery code). */
export const AMR_PASSWORD = [...SIGN_IN_METHODS.password];
export const AMR_SECOND_FACTOR = [...SIGN_IN_METHODS.second_factor];

/** The login prompt's reason (interaction policy) when the session lacks a second factor this sign-in needs. */
export const SECOND_FACTOR_REQUIRED = 'second_factor_required';

/** Client metadata (extraClientMetadata): true makes every sign-in to the client use the second factor. */
export const REQUIRE_SECOND_FACTOR = 'require_second_factor';

/**
 * acr_values lists acceptable levels in order of preference (OIDC Core 3.1.2.1). Only a list that names
 * loa:2 and not loa:1 leaves the password alone unacceptable; unknown values are ignored.
 */
export function acrValuesNeedSecondFactor(acrValues: unknown): boolean {
  if (typeof acrValues !== 'string') return false;
  const values = acrValues.split(' ');
  return values.includes(ACR_SECOND_FACTOR) && !values.includes(ACR_PASSWORD);
}

export function clientRequiresSecondFactor(client: unknown): boolean {
  return typeof client === 'object' && client !== null && (client as Record<string, unknown>)[REQUIRE_SECOND_FACTOR] === true;
}

export interface SecondFactorDecision {
  /** This sign-in must include the second factor. */
  required: boolean;
  /** The account has one (else, when required, it enrolls during the sign-in). */
  enabled: boolean;
}

/** Whether a sign-in by this account, for this client and request, must include the second factor. */
export async function secondFactorDecision(
  requirementOf: (accountId: string) => Promise<LoginRequirement>,
  request: { accountId: string; client: unknown; acrValues: unknown },
): Promise<SecondFactorDecision> {
  const { enabled, requiredByRole } = await requirementOf(request.accountId);
  const required = enabled || requiredByRole || clientRequiresSecondFactor(request.client) || acrValuesNeedSecondFactor(request.acrValues);
  return { required, enabled };
}
