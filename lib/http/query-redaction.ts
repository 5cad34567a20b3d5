/**
 * The query keys whose values are redacted: those the HTTP conventions name (signed URLs'
 * credentials), AWS SigV4's and Google's own, and the usual names of tokens, keys and
 * passwords. Case-insensitive, whole keys (percent-encoded, or with a `[...]` suffix, as well).
 */
const SENSITIVE_KEYS = [
  'AWSAccessKeyId',
  'Signature',
  'sig',
  'X-Goog-Signature',
  'X-Goog-Credential',
  'X-Amz-Signature',
  'X-Amz-Credential',
  'X-Amz-Security-Token',
  'access_token',
  'id_token',
  'refresh_token',
  'token',
  'api_key',
  'apikey',
  'key',
  'client_secret',
  'secret',
  'password',
  'passwd',
  'pass',
  'pwd',
  'code',
  'jwt',
  'auth',
  'authorization',
  'api-key',
  'x-api-key',
  'private_token',
  'session',
  'sessionid',
  'session_id',
  'client_assertion',
  'SAMLResponse',
  'otp',
];
const SENSITIVE = new Set(SENSITIVE_KEYS.map((key) => key.toLowerCase()));
/** The usual query: keys spelt plainly, replaced in one pass. */
const SENSITIVE_QUERY = new RegExp(`(^|&)(${SENSITIVE_KEYS.join('|')})=[^&]*`, 'gi');

/** A query key as the application reads it: decoded, without a `[...]` suffix, in lower case. */
function plainKey(raw: string): string {
  let key = raw;
  try {
    key = decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    // Left as it came.
  }
  const bracket = key.indexOf('[');
  return (bracket > 0 ? key.slice(0, bracket) : key).toLowerCase();
}

/** `url.query`, with the values of credentials replaced by `REDACTED`. */
export function redactedQuery(query: string): string {
  if (!query.includes('%') && !query.includes('[') && !query.includes('+')) {
    return query.replace(SENSITIVE_QUERY, '$1$2=REDACTED');
  }
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq === -1) return pair;
      const key = pair.slice(0, eq);
      return SENSITIVE.has(plainKey(key)) ? `${key}=REDACTED` : pair;
    })
    .join('&');
}

/** A URL with the values of credentials in its query redacted (a fragment kept as it is). */
export function redactedUrl(url: string): string {
  const q = url.indexOf('?');
  if (q === -1) return url;
  const hash = url.indexOf('#', q);
  const end = hash === -1 ? url.length : hash;
  return url.slice(0, q + 1) + redactedQuery(url.slice(q + 1, end)) + url.slice(end);
}
