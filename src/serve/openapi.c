/*
 * openapi.c — GET /v1/openapi.json: the OpenAPI 3 description of the API,
 * compiled in from openapi_doc.c (the same text as docs/openapi.json; a
 * test checks that they are identical).
 */
#include <string.h>

#include "serve/serve_int.h"

extern const char sv_openapi_doc[];

int sv_h_openapi(sv_req *q)
{
    (void)rk_buf_append(q->out, sv_openapi_doc, strlen(sv_openapi_doc));
    return 0;
}
