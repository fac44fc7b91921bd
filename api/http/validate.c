/* Field validation helpers (see validate.h). */
#include "validate.h"

#include "app.h"
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* "'<field>' must <rule> <what>" as a 400 naming the field. */
static void fail(http_resp *rs, const char *field, const char *rule, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof msg, "'%s' must %s %s", field, rule, what);
    http_error(rs, 400, "invalid_field", msg, field);
}

bool v_known_fields(http_resp *rs, yajl_val obj, const char *const *allowed, const char *prefix)
{
    for (size_t i = 0; i < obj->u.object.len; i++) {
        const char *k = obj->u.object.keys[i];
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(k, *a))
                ok = true;
        if (!ok) {
            char field[160], msg[256];
            snprintf(field, sizeof field, "%s%.100s", prefix, k);
            snprintf(msg, sizeof msg, "unknown field '%s'", field);
            http_error(rs, 400, "unknown_field", msg, field);
            return false;
        }
    }
    return true;
}

/* Looks up key; returns false (with error) if required and absent; *v NULL if absent. */
static bool lookup(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
                   yajl_val *v)
{
    *v = json_get(obj, key);
    if (!*v && (flags & V_REQUIRED)) {
        char msg[200];
        snprintf(msg, sizeof msg, "'%s' is required", field);
        http_error(rs, 400, "missing_field", msg, field);
        return false;
    }
    return true;
}

bool v_int(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags, int64_t min,
           int64_t max, int64_t *out)
{
    yajl_val v;
    if (!lookup(rs, obj, key, field, flags, &v))
        return false;
    if (!v)
        return true;
    if (!json_int(v, min, max, out)) {
        char range[96];
        snprintf(range, sizeof range, "%lld to %lld", (long long)min, (long long)max);
        fail(rs, field, "be an integer from", range);
        return false;
    }
    return true;
}

bool v_number(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
              double min, double max, double *out)
{
    yajl_val v;
    if (!lookup(rs, obj, key, field, flags, &v))
        return false;
    if (!v)
        return true;
    if (!json_number(v, min, max, out)) {
        char range[96];
        snprintf(range, sizeof range, "%g to %g", min, max);
        fail(rs, field, "be a number from", range);
        return false;
    }
    return true;
}

bool v_bool(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags, bool *out)
{
    yajl_val v;
    if (!lookup(rs, obj, key, field, flags, &v))
        return false;
    if (!v)
        return true;
    if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v)) {
        fail(rs, field, "be", "true or false");
        return false;
    }
    *out = YAJL_IS_TRUE(v);
    return true;
}

/* The string member key: false (answered) when present but not a string; true with *s
 * NULL when absent and optional. */
static bool lookup_str(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
                       const char **s)
{
    yajl_val v;
    *s = NULL;
    if (!lookup(rs, obj, key, field, flags, &v))
        return false;
    if (!v)
        return true;
    if (!(*s = json_str(v))) {
        fail(rs, field, "be", "a string");
        return false;
    }
    return true;
}

/* n (bytes or characters, unit) within 1..max, or 0..max when empty is allowed. */
static bool length_ok(http_resp *rs, const char *field, size_t n, size_t max, bool allow_empty,
                      const char *unit)
{
    if ((allow_empty || n > 0) && n <= max)
        return true;
    char what[64];
    snprintf(what, sizeof what, "%s%zu %s", allow_empty ? "at most " : "1 to ", max, unit);
    fail(rs, field, "be", what);
    return false;
}

bool v_str(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
           size_t maxlen, bool allow_empty, const char **out)
{
    const char *s;
    if (!lookup_str(rs, obj, key, field, flags, &s))
        return false;
    if (!s)
        return true;
    size_t n = strlen(s);
    if (!length_ok(rs, field, n, maxlen, allow_empty, "bytes"))
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 && s[i] != '\t') {
            fail(rs, field, "not contain", "control characters");
            return false;
        }
    }
    *out = s;
    return true;
}

/* The code point starting at s (valid UTF-8, as checked before), its length in *len. */
static uint32_t utf8_next(const unsigned char *s, size_t *len)
{
    if (s[0] < 0x80) {
        *len = 1;
        return s[0];
    }
    if (s[0] < 0xE0) {
        *len = 2;
        return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    }
    if (s[0] < 0xF0) {
        *len = 3;
        return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    }
    *len = 4;
    return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
           (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
}

bool v_line_text(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
                 size_t max_chars, bool allow_empty, const char **out)
{
    const char *s;
    if (!lookup_str(rs, obj, key, field, flags, &s))
        return false;
    if (!s)
        return true;
    size_t n = strlen(s), chars = 0;
    if (!utf8_valid(s, n)) {
        fail(rs, field, "be", "valid UTF-8 text");
        return false;
    }
    for (size_t i = 0, len = 0; i < n; i += len, chars++) {
        uint32_t c = utf8_next((const unsigned char *)s + i, &len);
        if (c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0x2028 || c == 0x2029) {
            fail(rs, field, "not contain",
                 "control characters, line breaks or tabs (one line of text)");
            return false;
        }
    }
    if (!length_ok(rs, field, chars, max_chars, allow_empty, "characters"))
        return false;
    *out = s;
    return true;
}

bool v_enum(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
            const char *const *choices, const char **out)
{
    size_t n = 0;
    while (choices[n])
        n++;
    return v_enum_n(rs, obj, key, field, flags, choices, n, out);
}

bool v_enum_n(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
              const char *const *choices, size_t nchoices, const char **out)
{
    const char *s = NULL;
    if (!v_str(rs, obj, key, field, flags, 64, false, &s))
        return false;
    if (!s)
        return true;
    char list[200] = "";
    for (size_t i = 0; i < nchoices; i++) {
        if (!strcmp(s, choices[i])) {
            *out = choices[i];
            return true;
        }
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", l ? ", " : "", choices[i]);
    }
    fail(rs, field, "be one of:", list);
    return false;
}

static bool atext(int c)
{
    return isalnum(c) || strchr("!#$%&'*+/=?^_`{|}~-", c) != NULL;
}

static bool valid_dns_name(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!isalnum(c) && c != '-')
            return false;
        if (c == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && s[n - 1] != '-';
}

bool valid_email(const char *s)
{
    size_t n = strlen(s);
    const char *at = strrchr(s, '@');
    if (n > 254 || !at || at == s || (size_t)(at - s) > 64)
        return false;
    for (const char *p = s; p < at; p++) {
        if (*p == '.') {
            if (p == s || p[1] == '@' || p[1] == '.')
                return false;
        } else if (!atext((unsigned char)*p)) {
            return false;
        }
    }
    const char *domain = at + 1;
    return strchr(domain, '.') != NULL && valid_dns_name(domain);
}

bool valid_host(const char *s)
{
    unsigned char tmp[16];
    if (inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1)
        return true;
    return valid_dns_name(s);
}

bool v_timezone(http_resp *rs, const app *a, const char *tz, const char *field)
{
    static const char *const pseudo[] = {"localtime", "Factory", "posixrules", NULL};
    const char *last = strrchr(tz, '/');
    last = last ? last + 1 : tz;
    for (const char *const *p = pseudo; *p; p++) {
        if (!strcasecmp(last, *p)) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "'%s' must be a place's IANA time zone, not the pseudo-zone %s", field, *p);
            http_error(rs, 400, "invalid_field", msg, field);
            return false;
        }
    }
    if (!app_timezone_known(a, tz)) {
        char msg[160];
        snprintf(msg, sizeof msg, "'%s' is not a known IANA time zone name", field);
        http_error(rs, 400, "invalid_field", msg, field);
        return false;
    }
    return true;
}

bool v_page(http_req *rq, http_resp *rs, int64_t def, int64_t max, int64_t *limit, int64_t *cursor)
{
    const char *l = http_query(rq, "limit"), *c = http_query(rq, "cursor");
    *limit = def;
    *cursor = 0;
    if (l && !parse_canonical(l, strlen(l), 1, max, limit)) {
        char msg[96];
        snprintf(msg, sizeof msg, "limit must be an integer from 1 to %lld", (long long)max);
        http_error(rs, 400, "invalid_query", msg, "limit");
        return false;
    }
    if (c && *c && !parse_canonical(c, strlen(c), 0, INT64_MAX, cursor)) {
        http_error(rs, 400, "invalid_query", "cursor must be a value from next_cursor", "cursor");
        return false;
    }
    return true;
}

bool v_path_id(http_req *rq, http_resp *rs, int idx, int64_t *id)
{
    const char *s = idx < rq->nparams ? rq->params[idx] : NULL;
    if (!s || !parse_canonical(s, strlen(s), 1, INT64_MAX, id)) {
        http_error(rs, 404, "not_found", "no such resource", NULL);
        return false;
    }
    return true;
}
