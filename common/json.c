/* JSON helpers over yajl (see json.h). */
#include "json.h"

#include "xalloc.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* ASCII without NUL, eight bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ULL) ||
                ((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL))
                break;
            i += 8;
        }
        if (i == n)
            break;
        unsigned c = p[i];
        size_t extra;
        unsigned min;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1;
            min = 0x80;
            c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2;
            min = 0x800;
            c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3;
            min = 0x10000;
            c &= 0x07;
        } else {
            return false;
        }
        if (i + extra >= n)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            c = (c << 6) | (p[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        i += extra + 1;
    }
    return true;
}

yajl_val json_parse(const char *data, size_t len, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!utf8_valid(data, len)) {
        if (err)
            snprintf(err, errlen, "body is not valid UTF-8 text");
        return NULL;
    }
    char *copy = xstrndup(data, len);
    char yerr[256] = "";
    yajl_val v = yajl_tree_parse(copy, yerr, sizeof yerr);
    free(copy);
    if (!v && err) {
        /* yajl's message spans lines and echoes input; keep the first line only. */
        char *nl = strchr(yerr, '\n');
        if (nl)
            *nl = '\0';
        snprintf(err, errlen, "malformed JSON: %s", yerr[0] ? yerr : "parse error");
    }
    return v;
}

yajl_val json_get(yajl_val obj, const char *key)
{
    if (!obj || !YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (!strcmp(obj->u.object.keys[i], key))
            return obj->u.object.values[i];
    return NULL;
}

bool json_int(yajl_val v, int64_t min, int64_t max, int64_t *out)
{
    if (!v || !YAJL_IS_INTEGER(v))
        return false;
    long long x = YAJL_GET_INTEGER(v);
    if (x < min || x > max)
        return false;
    *out = x;
    return true;
}

bool json_number(yajl_val v, double min, double max, double *out)
{
    if (!v || !YAJL_IS_NUMBER(v))
        return false;
    double x = YAJL_IS_INTEGER(v) ? (double)YAJL_GET_INTEGER(v) : YAJL_GET_DOUBLE(v);
    if (!YAJL_IS_INTEGER(v) && !YAJL_IS_DOUBLE(v))
        return false;
    if (!isfinite(x) || x < min || x > max)
        return false;
    *out = x;
    return true;
}

const char *json_str(yajl_val v)
{
    return (v && YAJL_IS_STRING(v)) ? YAJL_GET_STRING(v) : NULL;
}

static void gen_print(void *ctx, const char *str, size_t len)
{
    buf_append((buf *)ctx, str, len);
}

yajl_gen json_gen_new(buf *out)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (!g) {
        fprintf(stderr, "kiln: out of memory in yajl_gen_alloc\n");
        abort();
    }
    yajl_gen_config(g, yajl_gen_print_callback, gen_print, (void *)out);
    yajl_gen_config(g, yajl_gen_validate_utf8, 1);
    return g;
}

void json_gen_free(yajl_gen g)
{
    if (g)
        yajl_gen_free(g);
}

void json_str_n(yajl_gen g, const char *s, size_t n)
{
    if (yajl_gen_string(g, (const unsigned char *)s, n) == yajl_gen_invalid_string)
        yajl_gen_string(g, (const unsigned char *)"\xEF\xBF\xBD", 3);
}

void json_s(yajl_gen g, const char *s)
{
    if (!s)
        yajl_gen_null(g);
    else
        json_str_n(g, s, strlen(s));
}

void json_i(yajl_gen g, int64_t v)
{
    yajl_gen_integer(g, (long long)v);
}

void json_d(yajl_gen g, double v)
{
    if (!isfinite(v))
        yajl_gen_null(g);
    else
        yajl_gen_double(g, v);
}

void json_b(yajl_gen g, bool v)
{
    yajl_gen_bool(g, v);
}

void json_null(yajl_gen g)
{
    yajl_gen_null(g);
}

void json_obj_open(yajl_gen g)
{
    yajl_gen_map_open(g);
}

void json_obj_close(yajl_gen g)
{
    yajl_gen_map_close(g);
}

void json_arr_open(yajl_gen g)
{
    yajl_gen_array_open(g);
}

void json_arr_close(yajl_gen g)
{
    yajl_gen_array_close(g);
}

void json_key(yajl_gen g, const char *key)
{
    json_s(g, key);
}

void json_kv_s(yajl_gen g, const char *key, const char *val)
{
    json_key(g, key);
    json_s(g, val);
}

void json_kv_i(yajl_gen g, const char *key, int64_t val)
{
    json_key(g, key);
    json_i(g, val);
}

void json_kv_d(yajl_gen g, const char *key, double val)
{
    json_key(g, key);
    json_d(g, val);
}

void json_kv_b(yajl_gen g, const char *key, bool val)
{
    json_key(g, key);
    json_b(g, val);
}

void json_kv_null(yajl_gen g, const char *key)
{
    json_key(g, key);
    json_null(g);
}
