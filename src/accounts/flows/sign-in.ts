// Signing in to an application: the password (with its lockout and trusted devices), then, when the sign-in
// needs it, the second factor — an authenticator code, a recovery code, or enrollment inside the sign-in
// when it is required but not set up yet (as Keycloak's CONFIGURE_TOTP; it always asks this sign-in's
// password first). Every outcome is audited here; the door (the interaction pages) reads the form, calls
// one step and shows its result, and ends the sign-in in the engine when the flow says so.
//
// "Password verified for account X" is kept server-side in the store, under the sign-in's id, for the
// sign-in's remaining lifetime — never in the engine's interaction result, which the engine's resume
// endpoint applies to whoever opens it (that would sign in on the password alone).
import type { AuditTrail } from '../../audit/audit.ts';
import type { Clock } from '../../clock.ts';
import type { MailQueue } from '../../mail/queue.ts';
import type { Store } from '../../store/store.ts';
import type { CodeFailure, Enrollment, SecondFactorService } from '../second-factor.ts';
import type { User, UserService } from '../users.ts';
import type { AccountLinks, AttemptDecision, CodeAttempts, RequestOrigin } from './dependencies.ts';
import { secondFactorNotice, type TooManyCodes } from './second-factor-settings.ts';

/** How a sign-in proved who it is, as RFC 8176 method references (the engine's amr claim names them too). */
export const SIGN_IN_METHODS = { password: ['pwd'], second_factor: ['pwd', 'otp'] } as const;
export type SignInStrength = keyof typeof SIGN_IN_METHODS;

/** The sign-in being served: the engine's interaction, as the door read it, and where the request came from. */
export interface SignInRequest extends RequestOrigin {
  /** The interaction's id: the pending step is kept under it. */
  id: string;
  /** When the interaction expires (epoch seconds): the pending step expires with it. */
  expiresAt: number;
  clientId: string;
  acrValues: unknown;
  /** The session the sign-in started from, when it was signed in already (a step-up). */
  session?: { uid: string; accountId: string } | undefined;
  /** The account the application asked for (the subject of its id_token_hint): no other may finish this sign-in. */
  expectedAccountId?: string | undefined;
  ip: string;
}

/** Ends the sign-in in the engine with this account (the door's: it answers the browser). */
export type FinishSignIn = (accountId: string, strength: SignInStrength) => Promise<void>;

/** The password lockout (src/limits/login-guard.ts), which a trusted device of the email has apart. */
export interface PasswordAttempts {
  beforeAttempt(attempt: PasswordAttempt): Promise<PasswordDecision>;
  afterFailure(attempt: PasswordAttempt): Promise<PasswordDecision>;
  afterSuccess(attempt: PasswordAttempt): Promise<void>;
}
export interface PasswordAttempt {
  email: string;
  ip: string;
  /** The id of a trusted device of this email, as the door verified its cookie. */
  device?: string | undefined;
}
/** `trustedDevice`: counted against the trusted device, not the account. */
export type PasswordDecision = AttemptDecision & { trustedDevice: boolean };

export interface SignInDependencies {
  users: Pick<UserService, 'checkCredentials' | 'findById'>;
  passwordAttempts: PasswordAttempts;
  secondFactor: Pick<SecondFactorService, 'loginRequirement' | 'verifyCode' | 'useRecoveryCode' | 'confirmEnrollment' | 'pendingEnrollment' | 'startEnrollment'>;
  codeAttempts: CodeAttempts;
  /** Whether this sign-in must include the second factor (the account, its role, the client, acr_values). */
  needsSecondFactor(accountId: string, clientId: string, acrValues: unknown): Promise<boolean>;
  /** The account a session is signed in as now; undefined once it was ended or signed out. */
  sessionAccount(sessionUid: string): Promise<string | undefined>;
  store: Pick<Store, 'get' | 'put' | 'delete'>;
  auditTrail: Pick<AuditTrail, 'record'>;
  mail: Pick<MailQueue, 'deliver'>;
  links: Pick<AccountLinks, 'forgotPassword'>;
  clock: Clock;
  /** UNVERIFIED_LOGIN_ALLOWED: off, the right password of an unconfirmed address signs nobody in. */
  unverifiedLoginAllowed: boolean;
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

/** A sign-in waiting for its second factor, as `pendingStep` found it standing: pass it back to the next step. */
export interface PendingSignIn {
  readonly request: SignInRequest;
  readonly user: User;
  readonly pending: PendingStep;
}

/** Too many tries: `untrustDevice`, the trusted device reached its own lock and is trusted no more. */
export type TooManyPasswords = { ok: false; reason: 'too_many_attempts'; refusal: Extract<AttemptDecision, { allowed: false }>; untrustDevice: boolean };

export type PasswordOutcome =
  /** Signed in (the engine was told), or the second factor is next. */
  | { ok: true; next: 'signed_in' | 'second_factor' }
  | { ok: false; reason: 'wrong_credentials' }
  /** A field left empty: a slip, not a guess, so neither counted toward a lockout nor audited. */
  | { ok: false; reason: 'missing_credentials'; field: 'email' | 'password' }
  /** The right password, but the address is unconfirmed and UNVERIFIED_LOGIN_ALLOWED is off. */
  | { ok: false; reason: 'email_not_verified'; email: string }
  /** The right password, of another account than the one the application asked for (OIDC Core §3.1.2.1, id_token_hint). */
  | { ok: false; reason: 'other_account' }
  | TooManyPasswords;

/** Where the login page goes for a session already signed in that lacks only the second factor. */
export type StepUp =
  | { next: 'second_factor' }
  /** Ask for a password; `email`: the signed-in account must give its own before setting one up. */
  | { next: 'password'; email?: string };

/** What the step shows now. */
export type StepPage =
  | { show: 'code' }
  | { show: 'enrollment'; enrollment: Enrollment }
  /** Enrollment confirmed: the recovery codes were shown, "Continue" ends the sign-in. */
  | { show: 'recovery_codes' }
  /** Back to the password: the second factor was turned off since a step-up began, and setting one up asks it. */
  | { show: 'password' }
  /** Changed elsewhere meanwhile (confirmed or restarted in another sign-in): start again. */
  | { show: 'changed' };

export type CodeOutcome =
  | { ok: true }
  /** Not set up (any more): the step shows enrollment if it is required. */
  | { ok: false; reason: 'not_enabled' }
  | { ok: false; reason: Exclude<CodeFailure, 'not_enabled'> }
  /** No code entered: a slip, not a guess, so not counted toward the lockout. */
  | { ok: false; reason: 'missing' }
  /** The account changed meanwhile, or was disabled: back to the password. */
  | { ok: false; reason: 'stale' }
  | TooManyCodes;

export type EnrollmentOutcome =
  /** `recoveryCodes`: in clear this once. */
  | { ok: true; recoveryCodes: string[]; notice: () => Promise<unknown> }
  | { ok: false; reason: Exclude<CodeFailure, 'not_enabled'> | 'missing'; enrollment: Enrollment }
  /** Nothing to confirm here (not enrolling in this sign-in, or confirmed or restarted elsewhere): the step again. */
  | { ok: false; reason: 'restart' }
  | TooManyCodes;

export type ContinueOutcome = { ok: true } | { ok: false; reason: 'not_confirmed' | 'stale' };

export interface SignInFlow {
  /** The password: finishes the sign-in, or keeps it for the second factor when it needs one. */
  withPassword(request: SignInRequest, credentials: { email: string; password: string; device?: string | undefined }, finish: FinishSignIn): Promise<PasswordOutcome>;
  /** A session signed in with a password that lacks only the second factor: to the code, when that can be. */
  stepUp(request: SignInRequest): Promise<StepUp>;
  /** The sign-in's pending second-factor step, if it still stands (the first factor, the account unchanged). */
  pendingStep(request: SignInRequest): Promise<PendingSignIn | undefined>;
  page(step: PendingSignIn): Promise<StepPage>;
  /** An authenticator or a recovery code; the right one finishes the sign-in. */
  enterCode(step: PendingSignIn, method: 'totp' | 'recovery', code: string, finish: FinishSignIn): Promise<CodeOutcome>;
  /** Confirms the enrollment this sign-in started with a code from the new authenticator. */
  confirmEnrollment(step: PendingSignIn, code: string): Promise<EnrollmentOutcome>;
  /** After the recovery codes were shown: finishes the sign-in. */
  continueAfterEnrollment(step: PendingSignIn, finish: FinishSignIn): Promise<ContinueOutcome>;
  /** Forgets what the sign-in proved so far (it was cancelled). */
  cancel(signInId: string): Promise<void>;
}

export function createSignInFlow(dependencies: SignInDependencies): SignInFlow {
  const { users, passwordAttempts, secondFactor, codeAttempts, store, auditTrail, clock } = dependencies;

  const pendingKey = (signInId: string) => `second-factor-step:${signInId}`;

  async function forgetPending(signInId: string): Promise<void> {
    await store.delete([pendingKey(signInId)]);
  }

  async function savePending(request: SignInRequest, pending: PendingStep): Promise<void> {
    const remaining = request.expiresAt - Math.floor(clock.now().getTime() / 1000);
    if (remaining <= 0) throw new SignInExpired();
    await store.put(pendingKey(request.id), JSON.stringify(pending), remaining);
  }

  async function loadPending(signInId: string): Promise<PendingStep | undefined> {
    const record = await store.get(pendingKey(signInId));
    return record ? JSON.parse(record.value) as PendingStep : undefined;
  }

  /**
   * The sign-in keeps a copy of the session taken when it started. It stands for the first factor only while
   * that session is still signed in as the same account: not once it was ended ("sign out everywhere", a
   * password reset, the sessions page) or signed out.
   */
  async function sessionStillSignedIn(request: SignInRequest, accountId: string): Promise<boolean> {
    return request.session !== undefined && await dependencies.sessionAccount(request.session.uid) === accountId;
  }

  const seen = (request: SignInRequest, user: Pick<User, 'id' | 'email'>) => ({
    subjectUserId: user.id, subjectEmail: user.email, ip: request.ip, userAgent: request.userAgent, clientId: request.clientId,
  });

  /**
   * Whether the account's credentials are still those this sign-in began with; a stale step is audited (the
   * password it was given was the old one, or someone signed the account out everywhere meanwhile).
   */
  async function stillCurrent(step: PendingSignIn, user: User): Promise<boolean> {
    const { pending } = step;
    if (user.securityVersion === pending.securityVersion) return true;
    await auditTrail.record({
      action: 'login.failed', outcome: 'failure', ...seen(step.request, user),
      detail: { reason: 'credentials_changed', during: pending.confirmed ? 'recovery_codes' : pending.enrolling ? 'enrollment' : 'second_factor' },
    });
    return false;
  }

  /**
   * The sign-in is complete once the second factor is: that is when it is audited as a login. The account is
   * read once more first: a reset that landed while the code was being checked ends this sign-in too.
   */
  async function complete(step: PendingSignIn, finish: FinishSignIn): Promise<boolean> {
    const now = await users.findById(step.user.id);
    await forgetPending(step.request.id);
    if (!now || now.disabled || !await stillCurrent(step, now)) return false;
    await finish(now.id, 'second_factor');
    await auditTrail.record({ action: 'login.succeeded', outcome: 'success', ...seen(step.request, now), detail: { amr: [...SIGN_IN_METHODS.second_factor] } });
    return true;
  }

  /** The moment the second factor is locked is an event of its own, as the password's lockout is. */
  async function codeLockout(step: PendingSignIn, refusal: TooManyCodes['refusal']): Promise<TooManyCodes> {
    if (refusal.lockedNow) await auditTrail.record({ action: 'second_factor.locked_out', outcome: 'failure', ...seen(step.request, step.user), detail: { seconds: refusal.retryAfterSeconds } });
    return { ok: false, reason: 'too_many_attempts', refusal };
  }

  /** Counts a code attempt before it is checked; the refusal when no code may be tried now. */
  async function mayTryCode(step: PendingSignIn): Promise<TooManyCodes | undefined> {
    const before = await codeAttempts.beforeAttempt({ accountId: step.user.id, ip: step.request.ip });
    return before.allowed ? undefined : codeLockout(step, before);
  }

  /** A refused code: counted toward the lockout and audited; the refusal once the second factor is locked. */
  async function wrongCode(step: PendingSignIn, reason: CodeFailure, method: 'totp' | 'recovery', during: 'sign_in' | 'enrollment'): Promise<TooManyCodes | undefined> {
    const after = await codeAttempts.afterFailure({ accountId: step.user.id, ip: step.request.ip });
    await auditTrail.record({
      action: 'second_factor.failed', outcome: 'failure', ...seen(step.request, step.user),
      detail: { method: method === 'recovery' ? 'recovery_code' : 'totp', reason, during, ...(!after.allowed && after.lockedNow ? { lockedSeconds: after.retryAfterSeconds } : {}) },
    });
    return after.allowed ? undefined : codeLockout(step, after);
  }

  return {
    async withPassword(request, { email, password, device }, finish) {
      if (!email.trim()) return { ok: false, reason: 'missing_credentials', field: 'email' };
      if (!password) return { ok: false, reason: 'missing_credentials', field: 'password' };
      const attempt = { email, ip: request.ip, device };
      const seenAttempt = { subjectEmail: email, ip: request.ip, userAgent: request.userAgent, clientId: request.clientId };
      // Counted before the password is checked: a locked account refuses even the right password, except
      // from a trusted device, which only its own lock refuses.
      const before = await passwordAttempts.beforeAttempt(attempt);
      const onDevice = before.trustedDevice ? { device: 'trusted' } : {};
      const tooMany = async (decision: PasswordDecision): Promise<TooManyPasswords | undefined> => {
        if (decision.allowed) return undefined;
        if (decision.lockedNow) await auditTrail.record({ action: 'login.locked_out', outcome: 'failure', ...seenAttempt, detail: { seconds: decision.retryAfterSeconds, ...onDevice } });
        return { ok: false, reason: 'too_many_attempts', refusal: decision, untrustDevice: decision.trustedDevice };
      };
      if (!before.allowed) {
        // Attempts at a locked account are a trace of the attack; those over an IP's rate are not audited one by one.
        if (before.reason === 'locked') await auditTrail.record({ action: 'login.failed', outcome: 'failure', ...seenAttempt, detail: { reason: 'locked', ...onDevice } });
        return (await tooMany(before))!;
      }
      const check = await users.checkCredentials(email, password);
      if (!check.ok) {
        const after = await passwordAttempts.afterFailure(attempt);
        // By account too, when the address has one: `audit --user` finds the attempts after an email change.
        await auditTrail.record({
          action: 'login.failed', outcome: 'failure', ...seenAttempt, subjectUserId: check.accountId, detail: { reason: check.reason, ...onDevice },
        });
        return await tooMany(after) ?? { ok: false, reason: 'wrong_credentials' };
      }
      const { user } = check;
      // The right password, even where the sign-in stops below: the attempt was no guess.
      await passwordAttempts.afterSuccess(attempt);
      if (request.expectedAccountId !== undefined && user.id !== request.expectedAccountId) {
        await auditTrail.record({ action: 'login.failed', outcome: 'failure', ...seen(request, user), detail: { reason: 'other_account', ...onDevice } });
        return { ok: false, reason: 'other_account' };
      }
      if (!user.emailVerified && !dependencies.unverifiedLoginAllowed) {
        await auditTrail.record({ action: 'login.failed', outcome: 'failure', ...seen(request, user), detail: { reason: 'email_not_verified', ...onDevice } });
        return { ok: false, reason: 'email_not_verified', email: user.email };
      }
      if (await dependencies.needsSecondFactor(user.id, request.clientId, request.acrValues)) {
        await savePending(request, { accountId: user.id, securityVersion: user.securityVersion, via: 'password' });
        return { ok: true, next: 'second_factor' };
      }
      await forgetPending(request.id);
      await finish(user.id, 'password');
      await auditTrail.record({ action: 'login.succeeded', outcome: 'success', ...seen(request, user), detail: { amr: [...SIGN_IN_METHODS.password] } });
      return { ok: true, next: 'signed_in' };
    },

    async stepUp(request) {
      const { session } = request;
      if (!session) return { next: 'password' };
      const pending = await loadPending(request.id);
      if (!await sessionStillSignedIn(request, session.accountId)) {
        if (pending?.via === 'session') await forgetPending(request.id);
        return { next: 'password' };
      }
      // Setting up a second factor asks the password of this sign-in: a borrowed, signed-in browser must not
      // enroll its own authenticator and lock the owner out. A code of one already set up needs no password.
      const { enabled } = await secondFactor.loginRequirement(session.accountId);
      const passwordGiven = pending?.via === 'password' && pending.accountId === session.accountId;
      const account = await users.findById(session.accountId);
      if (!account) return { next: 'password' };
      if (!enabled && !passwordGiven) return { next: 'password', email: account.email };
      if (pending?.accountId !== session.accountId) await savePending(request, { accountId: session.accountId, securityVersion: account.securityVersion, via: 'session' });
      return { next: 'second_factor' };
    },

    async pendingStep(request) {
      const pending = await loadPending(request.id);
      if (!pending) return undefined;
      const user = await users.findById(pending.accountId);
      const firstFactorStands = pending.via === 'password' || await sessionStillSignedIn(request, pending.accountId);
      if (user && !user.disabled && firstFactorStands && await stillCurrent({ request, user, pending }, user)) return { request, user, pending };
      await forgetPending(request.id);
      return undefined;
    },

    async page(step) {
      const { pending, request } = step;
      if (pending.confirmed) return { show: 'recovery_codes' };
      const { enabled } = await secondFactor.loginRequirement(step.user.id);
      if (enabled) return { show: 'code' };
      if (pending.via !== 'password') {
        await forgetPending(request.id);
        return { show: 'password' };
      }
      // The enrollment this sign-in started (the same QR code on reload), or a new one.
      const started = pending.enrolling ? await secondFactor.pendingEnrollment(pending.accountId) : undefined;
      if (started) return { show: 'enrollment', enrollment: started };
      const enrollment = await secondFactor.startEnrollment(pending.accountId);
      if (!enrollment) return { show: 'changed' };
      await savePending(request, { ...pending, enrolling: true });
      return { show: 'enrollment', enrollment };
    },

    async enterCode(step, method, code, finish) {
      if (!code.trim()) return { ok: false, reason: 'missing' };
      const refused = await mayTryCode(step);
      if (refused) return refused;
      const result = method === 'recovery' ? await secondFactor.useRecoveryCode(step.user.id, code) : await secondFactor.verifyCode(step.user.id, code);
      if (!result.ok) {
        if (result.reason === 'not_enabled') return { ok: false, reason: 'not_enabled' };
        return await wrongCode(step, result.reason, method, 'sign_in') ?? { ok: false, reason: result.reason };
      }
      await codeAttempts.afterSuccess({ accountId: step.user.id, ip: step.request.ip });
      await auditTrail.record(result.method === 'recovery_code'
        ? { action: 'recovery_code.used', outcome: 'success', ...seen(step.request, step.user), detail: { remaining: result.recoveryCodesLeft, during: 'sign_in' } }
        : { action: 'second_factor.used', outcome: 'success', ...seen(step.request, step.user), detail: { method: 'totp', via: step.pending.via } });
      return await complete(step, finish) ? { ok: true } : { ok: false, reason: 'stale' };
    },

    async confirmEnrollment(step, code) {
      const { pending, user } = step;
      if (!pending.enrolling || pending.via !== 'password') return { ok: false, reason: 'restart' };
      if (!code.trim()) {
        const enrollment = await secondFactor.pendingEnrollment(user.id);
        return enrollment ? { ok: false, reason: 'missing', enrollment } : { ok: false, reason: 'restart' };
      }
      const refused = await mayTryCode(step);
      if (refused) return refused;
      const result = await secondFactor.confirmEnrollment(user.id, code, { whileSecurityVersion: pending.securityVersion });
      if (!result.ok) {
        const enrollment = result.reason === 'not_enabled' ? undefined : await secondFactor.pendingEnrollment(user.id);
        if (!enrollment || result.reason === 'not_enabled') return { ok: false, reason: 'restart' };
        return await wrongCode(step, result.reason, 'totp', 'enrollment') ?? { ok: false, reason: result.reason, enrollment };
      }
      await codeAttempts.afterSuccess({ accountId: user.id, ip: step.request.ip });
      await auditTrail.record({ action: 'second_factor.enrolled', outcome: 'success', ...seen(step.request, user), detail: { method: 'totp', during: 'sign_in' } });
      // Enrolling changed the account's security version: this sign-in goes on with the new one.
      await savePending(step.request, { ...pending, confirmed: true, securityVersion: result.securityVersion });
      return { ok: true, recoveryCodes: result.recoveryCodes, notice: secondFactorNotice(dependencies, user, 'enabled') };
    },

    async continueAfterEnrollment(step, finish) {
      if (!step.pending.confirmed) return { ok: false, reason: 'not_confirmed' };
      return await complete(step, finish) ? { ok: true } : { ok: false, reason: 'stale' };
    },

    cancel: forgetPending,
  };
}

/** The sign-in expired while it was being served: the person starts again from the application. */
export class SignInExpired extends Error {
  constructor() {
    super('the sign-in expired');
    this.name = 'SignInExpired';
  }
}
