/* KILN_* environment configuration (see config.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *config_str(const char *name, const char *def)
{
    const char *v = getenv(name);
    return (v && *v) ? v : def;
}

bool parse_int(const char *s, size_t n, int64_t min, int64_t max, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n == 0)
        return false;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i = 1;
        if (n == 1)
            return false;
    }
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        /* Checked before the step: after it, 20 digits wrap (18446744073709551617 is 1). */
        uint64_t digit = (uint64_t)(s[i] - '0');
        if (v > ((uint64_t)INT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    int64_t r = neg ? -(int64_t)v : (int64_t)v;
    if (r < min || r > max)
        return false;
    *out = r;
    return true;
}

bool parse_digits(const char *s, size_t n, int64_t min, int64_t max, int64_t *out)
{
    return n > 0 && s[0] >= '0' && s[0] <= '9' && parse_int(s, n, min, max, out);
}

bool parse_canonical(const char *s, size_t n, int64_t min, int64_t max, int64_t *out)
{
    return !(n > 1 && s[0] == '0') && parse_digits(s, n, min, max, out);
}

int config_int(const char *name, int64_t def, int64_t min, int64_t max, int64_t *out, char *err,
               size_t errlen)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = def;
        return 0;
    }
    if (!parse_int(v, strlen(v), min, max, out)) {
        snprintf(err, errlen, "%s=%s: expected an integer from %lld to %lld", name, v,
                 (long long)min, (long long)max);
        return -1;
    }
    return 0;
}
