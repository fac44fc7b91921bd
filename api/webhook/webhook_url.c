/* Webhook URL validation (see webhook_url.h). */
#include "webhook_url.h"

#include "config.h"
#include "validate.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

/* localhost, 127.0.0.0/8 or ::1: plain HTTP there never leaves the machine. */
static bool host_is_loopback(const char *host, size_t n)
{
    if ((n == 9 && !strncasecmp(host, "localhost", 9)) || (n == 5 && !memcmp(host, "[::1]", 5)))
        return true;
    if (n < 4 || memcmp(host, "127.", 4) != 0)
        return false;
    for (size_t i = 4; i < n; i++)
        if (!((host[i] >= '0' && host[i] <= '9') || host[i] == '.'))
            return false;
    return true;
}

/* The host of an authority: an IPv6 literal in brackets, or a name / IPv4 up to ':'. */
static const char *check_host(const char *host, size_t n, char *out, size_t outlen)
{
    if (n == 0)
        return "'url' must name a host";
    if (n >= outlen)
        return "'url' has a host name that is too long";
    if (host[0] == '[') {
        if (host[n - 1] != ']' || n < 3)
            return "'url' has an unterminated IPv6 literal";
        memcpy(out, host + 1, n - 2);
        out[n - 2] = '\0';
        if (!strchr(out, ':'))
            return "'url' has a bracketed host that is not an IPv6 address";
    } else {
        memcpy(out, host, n);
        out[n] = '\0';
    }
    return valid_host(out) ? NULL : "'url' has an invalid host name or address";
}

static const char *url_problem(const char *url, bool allow_http, bool canonical_port)
{
    size_t len = strlen(url);
    if (len == 0 || len > WEBHOOK_URL_MAX)
        return "'url' must be 1 to 2048 bytes";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return "'url' must be printable ASCII without spaces (percent-encode the rest)";
    if (strchr(url, '#'))
        return "'url' must not carry a fragment ('#')";
    bool https = !strncasecmp(url, "https://", 8), http = !strncasecmp(url, "http://", 7);
    if (!https && !http)
        return "'url' must start with https://";
    const char *auth = url + (https ? 8 : 7);
    size_t auth_len = strcspn(auth, "/?");
    if (memchr(auth, '@', auth_len))
        return "'url' must not carry user info (credentials before '@')";
    /* The port follows the last ':' outside an IPv6 literal's brackets. */
    const char *close = memchr(auth, ']', auth_len);
    const char *from = close ? close : auth;
    const char *colon = memchr(from, ':', auth_len - (size_t)(from - auth));
    size_t host_len = colon ? (size_t)(colon - auth) : auth_len;
    if (colon) {
        int64_t port;
        size_t plen = auth_len - host_len - 1;
        if (!(canonical_port ? parse_canonical : parse_digits)(colon + 1, plen, 1, 65535, &port))
            return "'url' has a port that is not 1 to 65535 (digits only, no leading zero)";
    }
    char host[256];
    const char *why = check_host(auth, host_len, host, sizeof host);
    if (why)
        return why;
    if (http && !allow_http && !host_is_loopback(auth, host_len))
        return "'url' must use https (plain http only to a loopback host unless the operator "
               "sets KILN_WEBHOOK_ALLOW_HTTP=1)";
    return NULL;
}

const char *webhook_url_problem(const char *url, bool allow_http)
{
    return url_problem(url, allow_http, true);
}

const char *webhook_url_deliverable(const char *url, bool allow_http)
{
    return url_problem(url, allow_http, false);
}
