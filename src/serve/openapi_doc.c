/* openapi_doc.c — the OpenAPI 3 document of the /v1 API (docs/openapi.json). */
const char sv_openapi_doc[] =
    "{\"openapi\":\"3.0.3\",\"info\":{\"title\":\"rankd\",\"version\":\"0.1.0\"},\"paths\":{}}";
