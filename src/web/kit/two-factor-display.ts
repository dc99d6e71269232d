// How the second factor's secrets are shown on a page: the otpauth:// URI as a QR code (a PNG data: URL,
// allowed by the CSP's img-src) and the base32 secret in groups of four, for typing into an app.
import QRCode from 'qrcode';
import type { Enrollment } from '../../accounts/second-factor.ts';

export interface EnrollmentView {
  qrDataUrl: string;
  /** "ABCD EFGH ..." — easier to read aloud and type than 32 characters in a row. */
  secretGroups: string;
}

export async function enrollmentView(enrollment: Enrollment): Promise<EnrollmentView> {
  const qrDataUrl = await QRCode.toDataURL(enrollment.uri, { errorCorrectionLevel: 'M', margin: 2, width: 220 });
  return { qrDataUrl, secretGroups: enrollment.secret.match(/.{1,4}/g)!.join(' ') };
}
