// The messages Gatehouse sends: each template's subject, the data it needs (checked), and the rendering of
// its text and HTML parts from views/mail/text and views/mail/html.
// No message carries the account's name: whoever signs up with an address they do not own chooses it, and
// mail to that address would speak in their words (a forged "your account was locked, sign in at …" under our
// sender). Greetings say "Hello,"; unknown keys are stripped on parsing, so a name passed anyway is dropped.
// The one typed text a message may show is a new email address, and only to an address that was confirmed.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Eta } from 'eta';
import { z } from 'zod';

// Links in a message must be absolute web URLs: a mail client has no base URL, and nothing else belongs in a button.
const webLink = z.url({ protocol: /^https?$/, error: 'must be an absolute http:// or https:// URL' });
const minutes = z.number().int().positive();

const templates = {
  'verify-email': {
    subject: 'Confirm your email address',
    data: z.object({ link: webLink, expiresInMinutes: minutes }),
  },
  'reset-password': {
    subject: 'Reset your password',
    data: z.object({ link: webLink, expiresInMinutes: minutes }),
  },
  'password-changed': {
    subject: 'Your password was changed',
    // link: where to start a password reset if the person did not make this change.
    data: z.object({ changedAt: z.date(), link: webLink }),
  },
  'email-changed': {
    subject: 'Your email address was changed',
    // Sent to the old address. With `undo`, its link undoes the change (puts this address back, signs everyone
    // out); `undoSentEarlier`: an earlier address of a run of changes holds that link. Neither: no way back by mail
    // (the old address was never confirmed). newEmail: left out when the old address was never confirmed (it may
    // be a stranger's).
    data: z.object({
      newEmail: z.email().optional(), changedAt: z.date(),
      undo: z.object({ link: webLink, expiresIn: z.string().min(1) }).optional(),
      undoSentEarlier: z.literal(true).optional(),
    }),
  },
  'account-exists': {
    subject: 'You already have an account',
    // Sent instead of a verification link when someone signs up with a registered address; link: where to sign in.
    data: z.object({ link: webLink }),
  },
  'confirm-email-change': {
    subject: 'Confirm your new email address',
    // Sent to the new address; link: where the change is confirmed (nothing changes until it is followed).
    data: z.object({ link: webLink, expiresInMinutes: minutes }),
  },
  'email-change-requested': {
    subject: 'A change of your email address was requested',
    // Sent to the current address; link: where to start a password reset if the person did not ask for this.
    // newEmail: left out when the current address was never confirmed (it may be a stranger's).
    data: z.object({ newEmail: z.email().optional(), requestedAt: z.date(), link: webLink }),
  },
  'second-factor-changed': {
    subject: 'Your two-factor authentication was changed',
    // Turned on, turned off (byAdministrator: by `gatehouse users reset-second-factor`), or new recovery
    // codes; link: where to start a password reset if the person did not make this change.
    data: z.object({
      change: z.enum(['enabled', 'disabled', 'recovery_codes_renewed']), changedAt: z.date(), link: webLink,
      byAdministrator: z.boolean().optional(),
    }),
  },
} as const;

export type TemplateName = keyof typeof templates;
/** The data each template needs, as callers pass it. */
export type TemplateData = { [Name in TemplateName]: z.input<(typeof templates)[Name]['data']> };
export const TEMPLATE_NAMES = Object.keys(templates) as TemplateName[];

export interface RenderedMessage {
  subject: string;
  text: string;
  html: string;
}

export type MailTemplates = {
  render<Name extends TemplateName>(template: Name, data: TemplateData[Name]): RenderedMessage;
};

export const MAIL_VIEWS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'views', 'mail');

/**
 * Two engines with separate roots, so a text template can never be rendered without HTML escaping into the
 * HTML part. HTML interpolations are HTML-escaped; text interpolations have their line breaks and other
 * control characters folded to spaces, so data cannot forge extra lines or paragraphs in the message.
 */
export function createMailTemplates(options: { cache: boolean; site: string }): MailTemplates {
  const html = new Eta({ views: path.join(MAIL_VIEWS_DIR, 'html'), autoEscape: true, cache: options.cache });
  const text = new Eta({
    // Text templates print exactly as written: no newline is trimmed after a tag.
    views: path.join(MAIL_VIEWS_DIR, 'text'), autoEscape: true, autoTrim: false, cache: options.cache,
    escapeFunction: (value: unknown) => String(value).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' '),
  });
  return {
    render(template, data) {
      const definition = templates[template];
      // Site: which server this is about, so a person can tell a real message from a phishing one.
      const values = { ...definition.data.parse(data), subject: definition.subject, site: options.site, formatTime, formatDuration };
      return {
        subject: definition.subject,
        text: normalizeText(text.render(template, values)),
        html: html.render(template, values),
      };
    },
  };
}

/** Times in messages are unambiguous whatever the reader's zone: UTC, to the minute. */
function formatTime(time: Date): string {
  return `${time.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** "30 minutes", "1 hour", "24 hours": how long a link stays valid, as a person would say it. */
function formatDuration(minutes: number): string {
  const [count, unit] = minutes % 60 === 0 ? [minutes / 60, 'hour'] : [minutes, 'minute'];
  return `${count} ${unit}${count === 1 ? '' : 's'}`;
}

/** Templates are indented for their authors; a text part has no trailing spaces and one blank line at most. */
function normalizeText(text: string): string {
  return `${text.replace(/[ \t]+$/gm, '').replace(/\n{3,}/g, '\n\n').trim()}\n`;
}
