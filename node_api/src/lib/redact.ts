/**
 * The one redaction of the Node API (Python's `research_job.io.database.redact_text`, same rules): any text
 * with every credential it may carry replaced by `***`, so that a database or object-store URL can go into a
 * log line, an error or a response. No URL parser is involved, so a malformed URL is redacted too.
 *
 * Hidden wherever they appear: the password of `scheme://user:password@` (any scheme; up to the token's last
 * `@`, so a raw `/`, `#` or `?` in it stays hidden, at the cost of hiding a little more of an odd URL than
 * needed), and the value of every secret parameter (`password`, `sslpassword`, `...token`, `...secret`,
 * `X-Amz-Signature`, any case) written as a URL query (`?password=x`, `&password=x`), a libpq keyword
 * (`password=x`, `password = 'with space'`) or a mapping (`"password": "x"`).
 */

export const REDACTED = '***';

/** scheme://user:password@ -- the password runs to the last "@" of the token (it may hold a raw / # ?) */
const USERINFO = /(?<head>[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s:/@?#'"]*):(?<pw>[^\s'"]*)@/g;
/**
 * a secret parameter: ?password=x &sslpassword=x (query), password='a b' (libpq keyword), "password": "x"; an
 * already redacted value (*** before a delimiter) matches as itself, so redacting twice changes nothing
 */
const PARAM =
  /(?<key>(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|signature))(?<eq>[ \t]*=[ \t]*|['"][ \t]*:[ \t]*)(?<val>\*\*\*(?=[\s&'"]|[:;,.)](?:\s|$)|$)|'(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|[^\s&'"]*)/gi;

/** `s` percent-decoded, or `s` itself when it is not valid percent-encoding. */
function decoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The secret strings of a connection string: passwords and secret parameters, raw, decoded and re-encoded. */
function secretsOf(url: string): string[] {
  const raw = [...url.matchAll(USERINFO)].map((m) => m.groups!.pw!);
  for (const m of url.matchAll(PARAM)) {
    let value = m.groups!.val!;
    if (value.startsWith("'") || value.startsWith('"')) {
      // a quoted libpq value: quotes off, \' and \\ unescaped
      value = (value.length > 1 && value.endsWith(value[0]!) ? value.slice(1, -1) : value.slice(1)).replace(/\\(.)/g, '$1');
    }
    raw.push(value);
  }
  const out = new Set<string>();
  for (const s of raw) for (const v of [s, decoded(s), encodeURIComponent(decoded(s))]) if (v && v !== REDACTED) out.add(v);
  return [...out].sort((a, b) => b.length - a.length);
}

/**
 * `text` with every credential hidden (see the module comment).
 * @param url the connection string a driver's message is about, if known: each of its secrets (raw and
 *   percent-decoded) is also hidden where it appears on its own (`password "p@ss" rejected`). Give it for a
 *   driver's message only: a short password would also hide the same word elsewhere.
 */
export function redact(text: string, url?: string): string {
  let out = text.replace(USERINFO, (_m, head: string) => `${head}:${REDACTED}@`);
  out = out.replace(PARAM, (_m, key: string, eq: string) => `${key}${eq}${REDACTED}`);
  if (url) for (const secret of secretsOf(url)) out = out.split(secret).join(REDACTED);
  return out;
}
