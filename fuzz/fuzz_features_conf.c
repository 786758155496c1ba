/*
 * fuzz_features_conf.c — libFuzzer target for feature definitions: a YAML
 * (or, when it starts with '{', JSON) config with entities, events and a
 * features section is compiled into a feature spec. Any input must compile
 * or fail with a located RK_ECONFIG; a compiled spec must survive its own
 * round trips (canonical form -> same spec and hash, save -> load) and
 * compute a vector for an empty request; compiling again with one
 * allocation failing (chosen from the input) must give a clean RK_ENOMEM;
 * nothing may leak.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rk_features.h"

#define FZ_NAME "fuzz.yaml"

#define FZ_ASSERT(cond)                                                     \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,      \
                    __LINE__, #cond);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Round trips and one computation of a compiled spec. */
static void check_spec(const rk_feat_spec *s, const rk_schema *schema)
{
    rk_err err = {0};
    const char *canon = rk_feat_canonical(s);
    rk_conf *c = NULL;
    FZ_ASSERT(rk_conf_parse_json(&c, canon, strlen(canon), "canon", &err) == 0);
    rk_feat_spec *s2 = NULL;
    int rc = rk_feat_spec_from_conf(&s2, rk_conf_root(c), schema, &err);
    if (rc) fprintf(stderr, "canonical form refused: %s\n%s\n", err.msg, canon);
    FZ_ASSERT(rc == 0);
    FZ_ASSERT(strcmp(rk_feat_canonical(s2), canon) == 0);
    FZ_ASSERT(rk_feat_schema_hash(s2) == rk_feat_schema_hash(s));
    rk_feat_spec_destroy(s2);
    rk_conf_destroy(c);

    rk_buf b;
    rk_buf_init(&b, 0);
    FZ_ASSERT(rk_feat_spec_save(s, &b) == 0);
    FZ_ASSERT(rk_feat_spec_load(&s2, b.data, b.len, schema, &err) == 0);
    FZ_ASSERT(rk_feat_schema_hash(s2) == rk_feat_schema_hash(s));
    FZ_ASSERT(rk_feat_ndense(s2) == rk_feat_ndense(s));
    rk_feat_spec_destroy(s2);
    rk_buf_free(&b);

    for (uint32_t j = 0; j < rk_feat_ndense(s); j++)
        FZ_ASSERT(rk_feat_dense_name(s, j) != NULL);
    rk_feat_source *src = NULL;
    FZ_ASSERT(rk_feat_source_create(&src, s) == 0);
    rk_feat_request req = {0};
    req.user = "u";
    req.user_len = 1;
    req.ts_ms = 1700000000000;
    req.context = "{\"device\":\"tv\",\"query\":\"red shoes\",\"n\":3}";
    req.context_len = strlen(req.context);
    rk_feat_item item = {"i", 1, 0, 0, NULL};
    rk_fvec v = {0};
    rc = rk_feat_compute(src, &req, &item, &v, &err);
    FZ_ASSERT(rk_feat_needs_fit(s) ? rc == RK_ESTATE : rc == 0);
    if (rc == 0) {
        FZ_ASSERT(v.ndense == rk_feat_ndense(s));
        uint32_t mask = (uint32_t)((1ull << rk_feat_hash_bits(s)) - 1);
        for (uint32_t i = 0; i < v.nsparse; i++) FZ_ASSERT(v.idx[i] <= mask);
    }
    rk_fvec_free(&v);
    rk_feat_source_destroy(src);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rk_mem_stats before, after;
    rk_mem_fail_at(0, 0);
    rk_mem_get_stats(&before);
    int json = size > 0 && data[0] == '{';
    rk_conf *c = NULL;
    rk_schema *schema = NULL;
    rk_err err = {0};
    int rc = json ? rk_conf_parse_json(&c, (const char *)data, size, FZ_NAME, &err)
                  : rk_conf_parse_yaml(&c, (const char *)data, size, FZ_NAME, &err);
    if (rc) goto done;
    if (rk_schema_from_conf(&schema, rk_conf_root(c), &err)) goto done;

    rk_mem_fail_at(0, 0); /* counts attempts from here */
    rk_feat_spec *s = NULL;
    rc = rk_feat_spec_from_conf(&s, rk_conf_root(c), schema, &err);
    uint64_t attempts = rk_mem_attempts();
    if (rc) {
        FZ_ASSERT(s == NULL);
        FZ_ASSERT(rc == RK_ECONFIG && err.code == RK_ECONFIG && err.msg[0]);
    } else {
        check_spec(s, schema);
        rk_feat_spec_destroy(s);
    }
    if (attempts > 0) {
        uint64_t h = 1469598103934665603u;
        for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211u;
        rk_mem_fail_at(1 + h % attempts, 0);
        rk_feat_spec *s2 = NULL;
        int rc2 = rk_feat_spec_from_conf(&s2, rk_conf_root(c), schema, &err);
        rk_mem_fail_at(0, 0);
        FZ_ASSERT(rc2 == RK_ENOMEM && s2 == NULL);
    }
done:
    rk_schema_destroy(schema);
    rk_conf_destroy(c);
    rk_mem_get_stats(&after);
    FZ_ASSERT(after.in_use == before.in_use);
    return 0;
}
