/* PGresult rows to JSON (see pgjson.h). */
#include "pgjson.h"

#include <stdlib.h>
#include <string.h>

enum {
    OID_BOOL = 16,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_NUMERIC = 1700
};

void pgjson_value(yajl_gen g, const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) {
        json_null(g);
        return;
    }
    const char *v = PQgetvalue(r, row, col);
    switch (PQftype(r, col)) {
    case OID_BOOL:
        json_b(g, v[0] == 't');
        break;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        json_i(g, strtoll(v, NULL, 10));
        break;
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC:
        json_d(g, strtod(v, NULL));
        break;
    default:
        json_str_n(g, v, (size_t)PQgetlength(r, row, col));
        break;
    }
}

void pgjson_members(yajl_gen g, const PGresult *r, int row, int from, int to)
{
    for (int c = from; c < to; c++) {
        json_key(g, PQfname(r, c));
        pgjson_value(g, r, row, c);
    }
}

void pgjson_row(yajl_gen g, const PGresult *r, int row)
{
    json_obj_open(g);
    pgjson_members(g, r, row, 0, PQnfields(r));
    json_obj_close(g);
}

void pgjson_page(yajl_gen g, const PGresult *r, long long limit)
{
    int n = PQntuples(r);
    int shown = n > limit ? (int)limit : n;
    json_obj_open(g);
    json_key(g, "items");
    json_arr_open(g);
    for (int i = 0; i < shown; i++)
        pgjson_row(g, r, i);
    json_arr_close(g);
    json_key(g, "next_cursor");
    if (n > limit && shown > 0)
        json_s(g, PQgetvalue(r, shown - 1, 0));
    else
        json_null(g);
    json_obj_close(g);
}
