/*
 * interactions_test.c — the implicit-feedback matrix: merging duplicates,
 * negative events, range checks, transpose, building from the store's
 * event log, and allocation failure.
 */
#include "rk_retrieval.h"
#include "test.h"

TEST(triplets_merge_and_sort)
{
    /* user, item, weight, ts — out of order, with duplicates. */
    const uint32_t u[] = {1, 0, 1, 1, 0, 2};
    const uint32_t i[] = {3, 2, 0, 3, 2, 1};
    const float w[] = {1, 2, 5, 3, 1, 4};
    const int64_t t[] = {50, 10, 5, 70, 20, 1};
    rk_interactions *m;
    rk_err err = {0};
    CHECK_OK(rk_interactions_from_triplets(&m, 3, 4, u, i, w, t, 6, &err));
    CHECK_EQ_INT(m->nnz, 4);
    CHECK_EQ_INT(m->user_ptr[0], 0);
    CHECK_EQ_INT(m->user_ptr[1], 1);
    CHECK_EQ_INT(m->user_ptr[2], 3);
    CHECK_EQ_INT(m->user_ptr[3], 4);
    /* user 0: item 2 weight 3, first 10, last 20 */
    CHECK(m->items[0] == 2 && m->weight[0] == 3);
    CHECK(m->first_ts[0] == 10 && m->last_ts[0] == 20);
    /* user 1: items 0 then 3 (sorted), item 3 summed 4 */
    CHECK(m->items[1] == 0 && m->weight[1] == 5);
    CHECK(m->items[2] == 3 && m->weight[2] == 4 && m->last_ts[2] == 70);
    CHECK(m->items[3] == 1);
    rk_interactions *tr;
    CHECK_OK(rk_interactions_transpose(m, &tr, &err));
    CHECK_EQ_INT(tr->nusers, 4);
    CHECK_EQ_INT(tr->nitems, 3);
    CHECK_EQ_INT(tr->nnz, 4);
    /* item 3 row: user 1 */
    CHECK_EQ_INT(tr->user_ptr[4] - tr->user_ptr[3], 1);
    CHECK_EQ_INT(tr->items[tr->user_ptr[3]], 1);
    CHECK(tr->weight[tr->user_ptr[3]] == 4);
    rk_interactions_free(tr);
    rk_interactions_free(m);
}

TEST(negative_resets_pair)
{
    /* click, dislike, click: only the last click survives; click then
     * dislike: the pair disappears. */
    const uint32_t u[] = {0, 0, 0, 0, 0};
    const uint32_t i[] = {1, 1, 1, 2, 2};
    const float w[] = {1, -1, 2, 3, -1};
    const int64_t t[] = {1, 2, 3, 1, 2};
    rk_interactions *m;
    rk_err err = {0};
    CHECK_OK(rk_interactions_from_triplets(&m, 1, 3, u, i, w, t, 5, &err));
    CHECK_EQ_INT(m->nnz, 1);
    CHECK(m->items[0] == 1 && m->weight[0] == 2 && m->first_ts[0] == 3);
    rk_interactions_free(m);
}

TEST(out_of_range_rejected)
{
    const uint32_t u[] = {0, 5};
    const uint32_t i[] = {0, 0};
    const float w[] = {1, 1};
    rk_interactions *m = NULL;
    rk_err err = {0};
    CHECK_EQ_INT(rk_interactions_from_triplets(&m, 2, 1, u, i, w, NULL, 2, &err),
                 RK_EINVAL);
    CHECK_CONTAINS(err.msg, "interaction 1");
    CHECK(m == NULL);
    const float bad[] = {1, NAN};
    const uint32_t u2[] = {0, 1};
    CHECK_EQ_INT(rk_interactions_from_triplets(&m, 2, 1, u2, i, bad, NULL, 2, &err),
                 RK_EINVAL);
}

TEST(from_store_roles_and_window)
{
    const char *dir = rk_test_tmpdir("inter-store");
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = dir;
    o.map_size = 64 << 20;
    rk_store *s;
    rk_err err = {0};
    CHECK_OK(rk_store_open(&s, &o, NULL, &err));
    rk_batch *b;
    CHECK_OK(rk_batch_create(&b, s, 0));
    static const struct {
        const char *type, *user, *item;
        int64_t ts;
        double value;
        int has_value;
    } evs[] = {
        {"impression", "a", "x", 1000, 0, 0}, /* exposure: ignored */
        {"click", "a", "x", 2000, 0, 0},      /* weight 1 */
        {"like", "a", "x", 3000, 0, 0},       /* weight 3 */
        {"rating", "a", "y", 4000, 3, 1},     /* below valued_min 4 */
        {"rating", "b", "y", 5000, 5, 1},     /* counts */
        {"click", "b", "z", 9000, 0, 0},      /* outside the window */
        {"click", "b", "x", 6000, 0, 0},
        {"dislike", "b", "x", 7000, 0, 0},    /* removes b-x */
    };
    for (size_t k = 0; k < sizeof evs / sizeof evs[0]; k++) {
        rk_event_in e = {.type = evs[k].type, .user = evs[k].user,
                         .item = evs[k].item, .ts_ms = evs[k].ts,
                         .value = evs[k].value, .has_value = evs[k].has_value,
                         .position = -1};
        CHECK_OK(rk_batch_event(b, &e, &err));
    }
    CHECK_OK(rk_store_write(s, b, NULL, &err));
    rk_batch_destroy(b);
    rk_inter_opts io;
    rk_inter_opts_default(&io);
    io.valued_min = 4;
    io.to_ts = 8000;
    rk_interactions *m;
    CHECK_OK(rk_interactions_from_store(&m, s, &io, &err));
    /* users a=0, b=1; items x=0, y=1, z=2 */
    CHECK_EQ_INT(m->nusers, 2);
    CHECK_EQ_INT(m->nitems, 3);
    CHECK_EQ_INT(m->nnz, 2);
    CHECK(m->items[0] == 0 && m->weight[0] == 4 && m->first_ts[0] == 2000);
    CHECK(m->items[1] == 1 && m->weight[1] == 1);
    rk_interactions_free(m);
    /* value_as_weight: the rating's value becomes its weight. */
    io.value_as_weight = 1;
    CHECK_OK(rk_interactions_from_store(&m, s, &io, &err));
    CHECK(m->weight[1] == 5);
    rk_interactions_free(m);
    rk_store_close(s);
    rk_test_rmdir(dir);
}

TEST(allocation_failures)
{
    uint32_t u[200], i[200];
    float w[200];
    for (int k = 0; k < 200; k++) {
        u[k] = (uint32_t)(k % 17);
        i[k] = (uint32_t)(k * 7 % 31);
        w[k] = 1;
    }
    int done = 0;
    for (uint64_t n = 1; n < 100 && !done; n++) {
        rk_interactions *m = NULL, *t = NULL;
        rk_err err = {0};
        rk_mem_fail_at(n, 0);
        int rc = rk_interactions_from_triplets(&m, 17, 31, u, i, w, NULL, 200, &err);
        if (rc == 0) rc = rk_interactions_transpose(m, &t, &err);
        rk_mem_fail_at(0, 0);
        CHECK(rc == 0 || rc == RK_ENOMEM);
        if (rc == 0) done = 1;
        rk_interactions_free(t);
        rk_interactions_free(m);
    }
    CHECK(done);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, triplets_merge_and_sort, negative_resets_pair,
                 out_of_range_rejected, from_store_roles_and_window,
                 allocation_failures);
}
