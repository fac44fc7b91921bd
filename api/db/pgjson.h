/* Writes PostgreSQL result rows as JSON objects, typed by column OID: integers and
 * booleans stay JSON numbers and booleans, SQL NULL becomes null. */
#ifndef KILN_PGJSON_H
#define KILN_PGJSON_H

#include "json.h"

#include <libpq-fe.h>

/* Writes the members of row (without the braces), columns [from, to). */
void pgjson_members(yajl_gen g, const PGresult *r, int row, int from, int to);
/* Writes row as one object with all columns. */
void pgjson_row(yajl_gen g, const PGresult *r, int row);
/* Writes the value of one cell. */
void pgjson_value(yajl_gen g, const PGresult *r, int row, int col);

/* A list page: {"items":[rows...],"next_cursor":"<id>"|null}. The query fetched
 * limit+1 rows ordered by id (column 0); the extra row only tells that more exist. */
void pgjson_page(yajl_gen g, const PGresult *r, long long limit);
#endif
