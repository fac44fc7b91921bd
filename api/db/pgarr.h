/* PostgreSQL array literals ('{1,2,"a\"b",NULL}') built element by element, so a
 * batch of rows goes to the server as a few array parameters of one statement
 * (unnest($1::bigint[], ...)) instead of a statement per row. */
#ifndef KILN_PGARR_H
#define KILN_PGARR_H

#include "arena.h"
#include "buf.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct pgarr {
    buf b;
    bool any;
} pgarr;

void pgarr_open(pgarr *a);
void pgarr_i64(pgarr *a, int64_t v);
/* A quoted element; NULL writes NULL. */
void pgarr_str(pgarr *a, const char *s);
void pgarr_null(pgarr *a);
/* Whole seconds of an epoch time; +-inf writes Infinity / -Infinity. */
void pgarr_seconds(pgarr *a, double s);
/* Closes the literal and hands it to arena ar (the buf is freed). */
const char *pgarr_done(pgarr *a, arena *ar);

#endif
