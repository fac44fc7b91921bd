/* Provider and Authentication-Results classification (see inbox_classify.h). */
#include "inbox_classify.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* Whether host is domain or ends in "." domain, case-insensitive. */
static bool host_in(const char *host, size_t hlen, const char *domain)
{
    size_t dlen = strlen(domain);
    if (hlen < dlen || strncasecmp(host + hlen - dlen, domain, dlen) != 0)
        return false;
    return hlen == dlen || host[hlen - dlen - 1] == '.';
}

/* yahoo.co.XX: the label "yahoo" followed by ".co." and one more label. */
static bool yahoo_co(const char *host, size_t hlen)
{
    for (size_t i = 0; i + 9 < hlen; i++) {
        if ((i == 0 || host[i - 1] == '.') && strncasecmp(host + i, "yahoo.co.", 9) == 0)
            return strchr(host + i + 9, '.') == NULL;
    }
    return false;
}

enum inbox_provider inbox_provider_of_host(const char *imap_host)
{
    if (!imap_host)
        return PROVIDER_OTHER;
    size_t n = strlen(imap_host);
    while (n > 0 && imap_host[n - 1] == '.')
        n--;
    static const char *const gmail[] = {"gmail.com", "googlemail.com"};
    static const char *const outlook[] = {"outlook.com", "office365.com", "hotmail.com",
                                          "live.com"};
    static const char *const yahoo[] = {"yahoo.com", "aol.com"};
    for (size_t i = 0; i < sizeof gmail / sizeof gmail[0]; i++)
        if (host_in(imap_host, n, gmail[i]))
            return PROVIDER_GMAIL;
    for (size_t i = 0; i < sizeof outlook / sizeof outlook[0]; i++)
        if (host_in(imap_host, n, outlook[i]))
            return PROVIDER_OUTLOOK;
    for (size_t i = 0; i < sizeof yahoo / sizeof yahoo[0]; i++)
        if (host_in(imap_host, n, yahoo[i]))
            return PROVIDER_YAHOO;
    return yahoo_co(imap_host, n) ? PROVIDER_YAHOO : PROVIDER_OTHER;
}

const char *inbox_provider_name(enum inbox_provider p)
{
    static const char *const names[] = {"gmail", "outlook", "yahoo", "other"};
    return names[p];
}

const char *inbox_verdict_name(enum inbox_verdict v)
{
    static const char *const names[] = {"none", "pass", "fail"};
    return names[v];
}

/* A cursor over the header value that skips CFWS (comments nest, RFC 5322 3.2.2). */
typedef struct ar_cursor {
    const char *s;
    size_t n, i;
} ar_cursor;

static void skip_cfws(ar_cursor *c)
{
    int depth = 0;
    while (c->i < c->n) {
        char ch = c->s[c->i];
        if (depth > 0) {
            if (ch == '\\')
                c->i++;
            else if (ch == '(')
                depth++;
            else if (ch == ')')
                depth--;
        } else if (ch == '(') {
            depth = 1;
        } else if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n') {
            return;
        }
        c->i++;
    }
}

/* Moves past the current resinfo to just after the next ';' outside comments and
 * quoted strings; false at the end. */
static bool next_resinfo(ar_cursor *c)
{
    bool quoted = false;
    int depth = 0;
    for (; c->i < c->n; c->i++) {
        char ch = c->s[c->i];
        if (ch == '\\' && (quoted || depth > 0)) {
            c->i++;
        } else if (quoted) {
            quoted = ch != '"';
        } else if (depth > 0) {
            depth += ch == '(' ? 1 : ch == ')' ? -1 : 0;
        } else if (ch == '"') {
            quoted = true;
        } else if (ch == '(') {
            depth = 1;
        } else if (ch == ';') {
            c->i++;
            return true;
        }
    }
    return false;
}

/* A token of letters, digits, '-' and '_' at the cursor; its length (0: none). */
static size_t token(ar_cursor *c, const char **start)
{
    *start = c->s + c->i;
    size_t k = c->i;
    while (k < c->n) {
        char ch = c->s[k];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            break;
        k++;
    }
    size_t len = k - c->i;
    c->i = k;
    return len;
}

static bool tok_is(const char *t, size_t n, const char *word)
{
    return n == strlen(word) && strncasecmp(t, word, n) == 0;
}

static enum inbox_verdict verdict_of(const char *t, size_t n)
{
    if (tok_is(t, n, "pass"))
        return VERDICT_PASS;
    if (tok_is(t, n, "fail") || tok_is(t, n, "softfail") || tok_is(t, n, "permerror") ||
        tok_is(t, n, "hardfail"))
        return VERDICT_FAIL;
    return VERDICT_NONE;
}

inbox_auth inbox_auth_parse(const char *value, size_t len)
{
    inbox_auth out = {VERDICT_NONE, VERDICT_NONE, VERDICT_NONE};
    bool seen_spf = false, seen_dkim = false, seen_dmarc = false;
    if (!value)
        return out;
    ar_cursor c = {value, len, 0};
    /* The authserv-id (and an optional version) come before the first ';'. */
    while (next_resinfo(&c)) {
        skip_cfws(&c);
        const char *m;
        size_t mlen = token(&c, &m);
        skip_cfws(&c);
        if (mlen == 0 || c.i >= c.n || c.s[c.i] != '=')
            continue;
        c.i++;
        skip_cfws(&c);
        const char *r;
        size_t rlen = token(&c, &r);
        enum inbox_verdict v = verdict_of(r, rlen);
        if (tok_is(m, mlen, "spf") && !seen_spf) {
            out.spf = v;
            seen_spf = true;
        } else if (tok_is(m, mlen, "dkim") && (!seen_dkim || v == VERDICT_PASS)) {
            if (!seen_dkim || out.dkim != VERDICT_PASS)
                out.dkim = v;
            seen_dkim = true;
        } else if (tok_is(m, mlen, "dmarc") && !seen_dmarc) {
            out.dmarc = v;
            seen_dmarc = true;
        }
    }
    return out;
}
