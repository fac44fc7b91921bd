/* Provider and Authentication-Results classification (see inbox_classify.h). */
#include "inbox_classify.h"

#include <stdbool.h>
#include <stdio.h>
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

static const char *const provider_names[] = {"gmail", "outlook", "yahoo", "other"};

const char *inbox_provider_name(enum inbox_provider p)
{
    return provider_names[p];
}

bool inbox_provider_parse(const char *name, size_t len, enum inbox_provider *out)
{
    for (size_t i = 0; i < sizeof provider_names / sizeof provider_names[0]; i++) {
        if (len == strlen(provider_names[i]) && strncmp(name, provider_names[i], len) == 0) {
            *out = (enum inbox_provider)i;
            return true;
        }
    }
    return false;
}

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == ':';
}

/* One "key=provider" entry of len bytes at e (entry k, 1-based, for messages). */
static bool map_entry(const char *e, size_t len, size_t k, inbox_provider_map *out, char *err,
                      size_t errlen)
{
    const char *eq = memchr(e, '=', len);
    size_t klen = eq ? (size_t)(eq - e) : 0;
    if (!eq || klen == 0 || klen > INBOX_PROVIDER_KEY_MAX) {
        snprintf(err, errlen, "KILN_PROVIDER_MAP entry %zu: expected host-or-domain=provider", k);
        return false;
    }
    for (size_t i = 0; i < klen; i++) {
        if (!host_char(e[i])) {
            snprintf(err, errlen, "KILN_PROVIDER_MAP entry %zu: '%.*s' is not a host or domain", k,
                     (int)klen, e);
            return false;
        }
    }
    enum inbox_provider p;
    if (!inbox_provider_parse(eq + 1, len - klen - 1, &p)) {
        snprintf(err, errlen,
                 "KILN_PROVIDER_MAP entry %zu: provider must be gmail, outlook, yahoo or other", k);
        return false;
    }
    if (out->n == INBOX_PROVIDER_MAP_MAX) {
        snprintf(err, errlen, "KILN_PROVIDER_MAP: more than %d entries", INBOX_PROVIDER_MAP_MAX);
        return false;
    }
    while (klen > 1 && e[klen - 1] == '.')
        klen--;
    memcpy(out->rule[out->n].key, e, klen);
    out->rule[out->n].key[klen] = '\0';
    out->rule[out->n].provider = p;
    out->n++;
    return true;
}

bool inbox_provider_map_parse(const char *spec, inbox_provider_map *out, char *err, size_t errlen)
{
    out->n = 0;
    size_t k = 0;
    while (spec && *spec) {
        while (*spec == ' ' || *spec == ',')
            spec++;
        if (!*spec)
            break;
        size_t len = strcspn(spec, ",");
        while (len > 0 && spec[len - 1] == ' ')
            len--;
        if (!map_entry(spec, len, ++k, out, err, errlen))
            return false;
        spec += len;
        while (*spec == ' ')
            spec++;
    }
    return true;
}

/* The map's provider for name (trailing dots ignored); false if no key matches. */
static bool map_lookup(const inbox_provider_map *m, const char *name, enum inbox_provider *out)
{
    if (!m || !name)
        return false;
    size_t n = strlen(name);
    while (n > 0 && name[n - 1] == '.')
        n--;
    for (size_t i = 0; n > 0 && i < m->n; i++) {
        if (host_in(name, n, m->rule[i].key)) {
            *out = m->rule[i].provider;
            return true;
        }
    }
    return false;
}

enum inbox_provider inbox_provider_of(const inbox_provider_map *m, const char *imap_host,
                                      const char *address)
{
    enum inbox_provider p;
    if (map_lookup(m, imap_host, &p))
        return p;
    const char *at = address ? strrchr(address, '@') : NULL;
    if (at && map_lookup(m, at + 1, &p))
        return p;
    return inbox_provider_of_host(imap_host);
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
