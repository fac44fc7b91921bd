/* The control-plane protocol's vocabulary (see wire.h). */
#include "wire.h"

#include <string.h>

const char *const wire_status_names[WIRE_STATUS_COUNT + 1] = {[WIRE_SENT] = "sent",
                                                              [WIRE_DEFERRED] = "deferred",
                                                              [WIRE_FAILED] = "failed",
                                                              [WIRE_AUTH] = "auth",
                                                              [WIRE_TLS] = "tls",
                                                              [WIRE_UNKNOWN] = "unknown",
                                                              [WIRE_EXPIRED] = "expired",
                                                              [WIRE_CANCELLED] = "cancelled",
                                                              NULL};

int wire_status_parse(const char *s, size_t n)
{
    for (int i = 0; i < WIRE_STATUS_COUNT; i++)
        if (strlen(wire_status_names[i]) == n && !memcmp(s, wire_status_names[i], n))
            return i;
    return -1;
}

static bool is_atext(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* dot-atom-text: 1*atext *("." 1*atext) */
static bool dot_atom_ok(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.' ? s[i + 1] == '.' : !is_atext((unsigned char)s[i]))
            return false;
    }
    return true;
}

bool wire_msgid_ok(const char *s, size_t n)
{
    if (!s || n < 5 || n > WIRE_MSGID_MAX || s[0] != '<' || s[n - 1] != '>')
        return false;
    const char *in = s + 1;
    size_t len = n - 2;
    const char *at = memchr(in, '@', len);
    if (!at)
        return false;
    size_t left = (size_t)(at - in), right = len - left - 1;
    if (!dot_atom_ok(in, left))
        return false;
    const char *r = at + 1;
    if (right >= 2 && r[0] == '[' && r[right - 1] == ']') {
        for (size_t i = 1; i + 1 < right; i++) { /* dtext: %d33-90 / %d94-126 */
            unsigned char c = (unsigned char)r[i];
            if (c < 33 || c > 126 || (c >= 91 && c <= 93))
                return false;
        }
        return true;
    }
    return dot_atom_ok(r, right);
}
