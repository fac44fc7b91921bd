/* JSON helpers over yajl: reading fields of a parsed tree with type checks, and
 * writing JSON into a buf through yajl_gen. Both sides of the wire (kiln-api and
 * kiln-agent) use these, so the shapes of DESIGN.md are produced one way. */
#ifndef KILN_JSON_H
#define KILN_JSON_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

/* Deepest nesting of objects and arrays a parse accepts; deeper input is refused
 * while it is read, before a tree exists. */
#define JSON_MAX_DEPTH 64

enum json_fault {
    JSON_OK = 0,
    JSON_SYNTAX,   /* not JSON (yajl's reason in the message) */
    JSON_TOO_DEEP, /* nested deeper than JSON_MAX_DEPTH */
    JSON_BAD_UTF8, /* raw bytes that are not UTF-8 (field set when inside a string) */
    JSON_BAD_TEXT, /* a string or member name with \u0000 or an unpaired surrogate escape */
    JSON_DUP_KEY,  /* a member name twice in one object (field names it) */
};

/* Why a parse failed. field is the member's path, dotted and indexed
 * ("smtp.password", "results[3].status", a rejected member name itself), or "". */
typedef struct json_error {
    enum json_fault fault;
    char field[256];
    char message[384];
} json_error;

/* Parses len bytes (need not be NUL-terminated) into a yajl_tree (free it with
 * yajl_tree_free). Every string and member name is valid UTF-8 without NUL or
 * surrogates; nesting is at most JSON_MAX_DEPTH; no object has a member twice. On
 * failure returns NULL and fills err. */
yajl_val json_parse_checked(const char *data, size_t len, json_error *err);
/* The same with the reason as one line of text in err. */
yajl_val json_parse(const char *data, size_t len, char *err, size_t errlen);

/* Object member lookup; NULL when obj is not an object or has no such key. */
yajl_val json_get(yajl_val obj, const char *key);
/* Integer value of v in [min,max]; false when v is not an integer or out of range. */
bool json_int(yajl_val v, int64_t min, int64_t max, int64_t *out);
/* Number (integer or fraction) in [min,max]. */
bool json_number(yajl_val v, double min, double max, double *out);
/* String value or NULL. */
const char *json_str(yajl_val v);

/* A JSON writer appending to a buf. */
yajl_gen json_gen_new(buf *out);
void json_gen_free(yajl_gen g);
void json_str_n(yajl_gen g, const char *s, size_t n);
void json_s(yajl_gen g, const char *s); /* NULL writes null */
void json_i(yajl_gen g, int64_t v);
void json_d(yajl_gen g, double v);
void json_b(yajl_gen g, bool v);
void json_null(yajl_gen g);
void json_obj_open(yajl_gen g);
void json_obj_close(yajl_gen g);
void json_arr_open(yajl_gen g);
void json_arr_close(yajl_gen g);
/* key + value in one call, for flat objects */
void json_kv_s(yajl_gen g, const char *key, const char *val);
void json_kv_i(yajl_gen g, const char *key, int64_t val);
void json_kv_d(yajl_gen g, const char *key, double val);
void json_kv_b(yajl_gen g, const char *key, bool val);
void json_kv_null(yajl_gen g, const char *key);
void json_key(yajl_gen g, const char *key);

/* True when s[0..n) is valid UTF-8 without NUL bytes. */
bool utf8_valid(const char *s, size_t n);

#endif
