/* Configuration from KILN_* environment variables, with defaults and range
 * checks. A bad value is a startup error with a message, never a silent default. */
#ifndef KILN_CONFIG_H
#define KILN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Value of the variable, or def when unset or empty. */
const char *config_str(const char *name, const char *def);
/* Integer in [min,max]; returns 0 and sets *out, or -1 with a message in err. */
int config_int(const char *name, int64_t def, int64_t min, int64_t max, int64_t *out, char *err,
               size_t errlen);
/* Strict decimal parse of s[0..n) into [min,max]; false on any junk. A sign and leading
 * zeros are taken: for configuration, where "+5" and "05" mean 5. */
bool parse_int(const char *s, size_t n, int64_t min, int64_t max, int64_t *out);
/* Digits only, no sign: a fixed-width field such as a date's "01". */
bool parse_digits(const char *s, size_t n, int64_t min, int64_t max, int64_t *out);
/* A number's one spelling: digits only, no sign, no leading zero ("0" itself aside). For
 * what names something (a path's id, a query's id or cursor, a URL's port), so one
 * resource has one name and what kiln accepts is what other software reads the same. */
bool parse_canonical(const char *s, size_t n, int64_t min, int64_t max, int64_t *out);

#endif
