/* Shared validation of JSON request fields with field-level errors. Each helper
 * returns true when the value is acceptable (or absent and optional); on failure it
 * fills the response with a 400/422 naming the field and returns false. */
#ifndef KILN_VALIDATE_H
#define KILN_VALIDATE_H

#include "http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define V_REQUIRED 1

/* Rejects members of obj not listed in allowed (NULL-terminated). prefix names the
 * enclosing object in the error ("smtp." or ""). */
bool v_known_fields(http_resp *rs, yajl_val obj, const char *const *allowed, const char *prefix);
bool v_int(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags, int64_t min,
           int64_t max, int64_t *out);
bool v_number(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
              double min, double max, double *out);
bool v_bool(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags, bool *out);
/* String of 1..maxlen bytes (or 0..maxlen when allow_empty). */
bool v_str(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
           size_t maxlen, bool allow_empty, const char **out);
/* One line of display text (a display name): valid UTF-8 of 0..max_chars Unicode
 * characters (1..max_chars unless allow_empty) without control characters (C0 with TAB,
 * DEL, C1) or line/paragraph separators, so it can go into a header unchanged. */
bool v_line_text(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
                 size_t max_chars, bool allow_empty, const char **out);
/* One of the NULL-terminated choices. */
bool v_enum(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
            const char *const *choices, const char **out);
/* One of the first nchoices of choices (a prefix of a longer list). */
bool v_enum_n(http_resp *rs, yajl_val obj, const char *key, const char *field, int flags,
              const char *const *choices, size_t nchoices, const char **out);

/* addr-spec of RFC 5321 in the dot-atom form mail providers accept, ≤ 254 bytes. */
bool valid_email(const char *s);
/* DNS host name (LDH labels) or an IPv4/IPv6 literal. */
bool valid_host(const char *s);

struct app;
/* A time zone PostgreSQL knows, except the pseudo-zones that are not places:
 * "localtime" (whatever the server's zone is), "Factory" and "posixrules" (tzdata
 * internals), also under "posix/". On failure fills rs with a 400 naming field. */
bool v_timezone(http_resp *rs, const struct app *a, const char *tz, const char *field);

/* Parses ?limit= (1..max, default def) and ?cursor= (an id > 0). */
bool v_page(http_req *rq, http_resp *rs, int64_t def, int64_t max, int64_t *limit, int64_t *cursor);
/* Parses a path parameter as a positive id; 404 if it is not one. */
bool v_path_id(http_req *rq, http_resp *rs, int idx, int64_t *id);

#endif
