// A new person's whole journey in a real Chromium, with real email over SMTP: sign up from the example
// SPA's login page, confirm the address from the email (open the link, press its button), go on to sign in
// from the "Check your email" page, turn on two-factor authentication in the account console, sign out,
// sign in again with an authenticator code (computed here with otplib), and once more with a recovery
// code. The ID tokens say how each sign-in happened (amr, acr).
import { decodeJwt } from 'jose';
import { generate } from 'otplib';
import type { Page, Response as BrowserResponse } from 'playwright-core';
import { PHONE, browserTest, fitsPhone, startExampleApps, watchForProblems } from '../helpers/browser.ts';
import { startSmtpServer } from '../helpers/smtp.ts';
import { startTestServer } from '../helpers/server.ts';
import { discover } from '../helpers/oauth.ts';

const PASSWORD = 'lantern orchard velvet 42';
const PERIOD_SECONDS = 30;

browserTest('sign up, verify the email, turn on TOTP, sign out, sign in with a code, then with a recovery code', { timeoutMs: 240_000 }, async (t, browser) => {
  const smtp = await startSmtpServer();
  t.teardown(() => smtp.close());
  // The default settings: sign-up signs no one in, and its page offers to go on to sign in.
  const server = await startTestServer({ SMTP_URL: smtp.url });
  t.teardown(() => server.close());
  const as = await discover(server);
  const { spaOrigin } = await startExampleApps(t, server);
  const email = `journey-${crypto.randomUUID()}@example.com`;

  const context = await browser.newContext({ viewport: PHONE });
  const page = await context.newPage();
  const problems = watchForProblems(page);
  t.teardown(() => {
    if (problems.consoleErrors.length || problems.failedRequests.length) t.log('seen in the browser:', { url: page.url(), ...problems });
  });
  /** Clicks and returns the ID token of the code exchange the SPA then makes. */
  const idTokenAfter = async (click: () => Promise<void>): Promise<Record<string, unknown>> => {
    const exchange: Promise<BrowserResponse> = page.waitForResponse((response) => response.url() === as.token_endpoint && response.request().method() === 'POST');
    await click();
    const body = await (await exchange).json() as { id_token: string };
    await page.getByRole('heading', { name: 'Signed in', exact: true }).waitFor();
    return decodeJwt(body.id_token);
  };

  // 1. Sign up from the SPA's sign-in: the login page offers an account.
  await page.goto(spaOrigin);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor();
  await page.getByRole('link', { name: 'Create an account' }).click();
  await page.getByRole('heading', { name: 'Create an account' }).waitFor();
  await fitsPhone(t, page, 'sign-up page');
  await page.getByLabel('Name').fill('Grace Hopper');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Check your email' }).waitFor();
  await fitsPhone(t, page, 'check your email page');

  // 2. The verification email arrives over SMTP. Its link, opened in another tab as from a mail app, shows
  //    a button (opening it alone confirms nothing: mail scanners open links too); the button confirms.
  const verification = await smtp.nextMail();
  t.deepEqual(verification.envelope.to, [email]);
  const link = /https?:\/\/\S+\/verify-email\?token=[\w-]+/.exec(verification.email.text ?? '')?.[0];
  t.truthy(link, 'the message carries the verification link');
  const mailTab = await context.newPage();
  const mailTabProblems = watchForProblems(mailTab);
  await mailTab.goto(link!);
  await mailTab.getByRole('heading', { name: 'Confirm your email address' }).waitFor();
  await fitsPhone(t, mailTab, 'confirm email page');
  await mailTab.getByRole('button', { name: 'Confirm my email address' }).click();
  await mailTab.getByRole('heading', { name: 'Your email is verified' }).waitFor();
  await fitsPhone(t, mailTab, 'email verified page');
  t.deepEqual(mailTabProblems, { consoleErrors: [], failedRequests: [] }, 'nothing went wrong in the mail tab');
  await mailTab.close();

  // 3. Back on "Check your email", go on to sign in: the address is filled in, the password is asked.
  //    Consent, then back in the SPA with a verified address.
  await page.getByRole('link', { name: 'Continue to sign in' }).click();
  await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor();
  t.is(await page.getByLabel('Email').inputValue(), email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('heading', { name: 'Allow Example SPA access?' }).waitFor();
  const withPassword = await idTokenAfter(() => page.getByRole('button', { name: 'Allow' }).click());
  t.like(withPassword, { email, email_verified: true, name: 'Grace Hopper', acr: 'urn:gatehouse:loa:1' });
  t.deepEqual(withPassword.amr, ['pwd']);

  // 4. Two-factor authentication from the account console (already signed in: one session).
  await page.goto(`${server.issuer}/account`);
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await page.getByRole('link', { name: 'Two-factor authentication' }).click();
  // Turning it on asks for the password again (a browser left signed in is not enough).
  await page.getByLabel('Your password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Set up two-factor authentication' }).click();
  await page.getByRole('heading', { name: 'Set up two-factor authentication' }).waitFor();
  t.true(await page.getByRole('img', { name: /QR code/ }).isVisible(), 'a QR code to scan');
  await fitsPhone(t, page, 'two-factor setup page');
  const secret = (await page.locator('#setup-key').innerText()).replaceAll(/\s/g, '');
  t.regex(secret, /^[A-Z2-7]{16,}$/, 'the setup key is shown for typing in');
  // The current step's code: accepted even if the next step begins before the server checks it.
  const enrolledAtStep = currentStep();
  const authenticator = new AuthenticatorCodes(secret, enrolledAtStep);
  await page.getByLabel('Code from the app').fill(await codeAt(secret, enrolledAtStep));
  await page.getByRole('button', { name: 'Turn on two-factor authentication' }).click();
  const codes = await page.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem').allInnerTexts();
  t.is(codes.length, 10, 'ten recovery codes, shown once');
  await fitsPhone(t, page, 'recovery codes page');
  // Password and code were just given here: this session counts as signed in with both, no step-up.
  await page.getByRole('link', { name: 'I have saved my recovery codes' }).click();
  await page.getByText('Two-factor authentication is on').waitFor();

  // 5. Sign out of Gatehouse (the account console's button ends this browser's session).
  await page.goto(`${server.issuer}/account`);
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: /signed out/i }).waitFor();

  // 6. Signing in to the SPA now asks for a code after the password: one of a time step not used yet.
  await signInWithPassword(page, spaOrigin, email);
  await page.getByLabel('Authentication code').waitFor();
  await fitsPhone(t, page, 'second-factor page');
  await page.getByLabel('Authentication code').fill(await authenticator.next());
  const withCode = await idTokenAfter(() => continueThroughConsent(page));
  t.like(withCode, { email, email_verified: true });
  t.deepEqual(withCode.amr, ['pwd', 'otp']);
  t.is(withCode.acr, 'urn:gatehouse:loa:2');

  // 7. Sign out of the SPA (RP-initiated logout), then sign in with a recovery code instead of the app.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await page.getByRole('status').filter({ hasText: 'You are signed out.' }).waitFor();
  await signInWithPassword(page, spaOrigin, email);
  await page.getByRole('link', { name: 'Use a recovery code instead' }).click();
  await page.getByLabel('Recovery code').fill(codes[0]!);
  const withRecoveryCode = await idTokenAfter(() => continueThroughConsent(page));
  t.is(withRecoveryCode.acr, 'urn:gatehouse:loa:2');
  t.true((withRecoveryCode.amr as string[]).includes('pwd'));

  // The used recovery code is spent: the account console says nine are left.
  await page.goto(`${server.issuer}/account/two-factor`);
  t.regex(await page.locator('#codes-left').innerText(), /Recovery codes left: 9 of 10/);

  t.deepEqual(problems.consoleErrors, [], 'no errors in the browser console');
  t.deepEqual(problems.failedRequests, [], 'no failed requests');
  await context.close();
});

/** From the signed-out SPA: "Sign in", then email and password on Gatehouse's login page. */
async function signInWithPassword(page: Page, spaOrigin: string, email: string): Promise<void> {
  await page.goto(spaOrigin);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

/** Submits the second-factor form; signing out ended the SPA's grant, so consent may be asked again. */
async function continueThroughConsent(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Continue' }).click();
  const allow = page.getByRole('button', { name: 'Allow' });
  const signedIn = page.getByRole('heading', { name: 'Signed in', exact: true });
  await allow.or(signedIn).first().waitFor();
  if (await allow.isVisible()) await allow.click();
}

/**
 * The codes a person types after enrolling, each of a time step no code was used for yet (a used step is
 * refused): the current step's, or, once that was used, the next one's (one step of drift is allowed). Such
 * a code stays accepted across the next step boundary, so nothing waits for the clock; a journey needing a
 * code beyond the next step's would have to, and is refused here instead.
 */
class AuthenticatorCodes {
  readonly #secret: string;
  #lastUsedStep: number;

  constructor(secret: string, lastUsedStep: number) {
    this.#secret = secret;
    this.#lastUsedStep = lastUsedStep;
  }

  async next(): Promise<string> {
    const step = Math.max(this.#lastUsedStep + 1, currentStep());
    if (step > currentStep() + 1) throw new Error('two codes were used in this time step already: a third would mean waiting for the next step');
    this.#lastUsedStep = step;
    return codeAt(this.#secret, step);
  }
}

function currentStep(): number {
  return Math.floor(Date.now() / 1000 / PERIOD_SECONDS);
}

function codeAt(secret: string, step: number): Promise<string> {
  return generate({ secret, epoch: step * PERIOD_SECONDS + 1 });
}
