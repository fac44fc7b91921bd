/* Checked allocation: every allocation in kiln goes through these, and an
 * out-of-memory condition aborts with a message instead of limping on. */
#ifndef KILN_XALLOC_H
#define KILN_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
