/*
 * generators_test.c — the heuristic candidate generators and the merger:
 * co-visitation weights against hand-computed values (window, decay,
 * direction, per-user caps), trending decay and popular/fresh order,
 * content similarity (TF-IDF by hand, tags, items without interactions),
 * the merger's quotas, dedupe, exclusions and filters, model files, and
 * allocation failure on every build.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#include "rk_retrieval.h"
#include "test.h"

#define H 3600000LL            /* one hour in ms */
#define T0 1700000000000LL     /* an arbitrary epoch ms origin */

static int close_to(double a, double b)
{
    return fabs(a - b) <= 1e-5 * (1 + fabs(b));
}

#define CHECK_NEAR(a, b)                                                   \
    do {                                                                   \
        double rk__x = (a), rk__y = (b);                                   \
        if (!close_to(rk__x, rk__y)) {                                     \
            fprintf(stderr, "  %s:%d: %s == %.9g, expected %.9g\n",        \
                    __FILE__, __LINE__, #a, rk__x, rk__y);                 \
            rk__test_failed = 1;                                           \
            return;                                                        \
        }                                                                  \
    } while (0)

/* ======================================================================== */
/* Co-visitation                                                             */
/* ======================================================================== */

enum { A, B, C, D };

typedef struct tev {
    uint32_t u, i;
    double hours;
    float w;
} tev;

typedef struct tpair {
    uint32_t x, y;
    double score;
} tpair;

typedef struct covis_case {
    const char *name;
    tev ev[8];
    size_t nev;
    double window_h, tau_h;
    int symmetric;
    uint32_t max_events_per_user, max_pairs_per_user, top_n; /* 0 = default */
    int unique; /* each (user, item) once: the matrix gives the same result */
    tpair expect[6];
    size_t nexpect;
    uint32_t count[4]; /* neighbours of A, B, C, D */
} covis_case;

/* The shared history: u0 sees A, then B an hour later (a purchase, weight
 * 3), then C 29 hours after B; u1 sees B, then A two hours later; u2 sees
 * A and B at the same instant. */
#define HISTORY                                                            \
    {{0, A, 0, 1}, {0, B, 1, 3}, {0, C, 30, 1}, {1, B, 0, 3}, {1, A, 2, 1}, \
     {2, A, 0, 1}, {2, B, 0, 1}},                                          \
        7

static const covis_case covis_cases[] = {
    /* Directed: A->B from u0 (3 e^-1/6) and u2 (same instant, 1); B->A from
     * u1 (e^-2/6 with A's weight 1) and u2 (1). B->C is 29 h: outside. */
    {"directed", HISTORY, 24, 6, 0, 0, 0, 0, 1,
     {{A, B, 0}, {B, A, 0}}, 2, {1, 1, 0, 0}},
    /* Symmetric adds u1's A->B (3 e^-2/6) and u0's B->A (e^-1/6). */
    {"symmetric", HISTORY, 24, 6, 1, 0, 0, 0, 1,
     {{A, B, 0}, {B, A, 0}}, 2, {1, 1, 0, 0}},
    /* A 30 h window lets u0's A->C (e^-5) and B->C (e^-29/6) in. */
    {"window_30h", HISTORY, 30, 6, 0, 0, 0, 0, 1,
     {{A, C, 0}, {B, C, 0}}, 2, {2, 2, 0, 0}},
    /* No decay: plain weighted counts. */
    {"no_decay", HISTORY, 24, 0, 0, 0, 0, 0, 1,
     {{A, B, 4}, {B, A, 2}}, 2, {1, 1, 0, 0}},
    /* A user repeating A, B, A, B adds each pair once, at its largest. */
    {"per_user_max",
     {{0, A, 0, 1}, {0, B, 1, 1}, {0, A, 2, 1}, {0, B, 3, 1}}, 4, 24, 6, 0,
     0, 0, 0, 0, {{A, B, 0}, {B, A, 0}}, 2, {1, 1, 0, 0}},
    {"outside_window", {{0, A, 0, 1}, {0, B, 25, 1}}, 2, 24, 6, 1, 0, 0, 0, 1,
     {{0}}, 0, {0, 0, 0, 0}},
    /* Only the last two events (B, C) of u0 count. */
    {"max_events_per_user", {{0, A, 0, 1}, {0, B, 1, 1}, {0, C, 2, 1}}, 3, 24,
     6, 0, 2, 0, 0, 1, {{B, C, 0}}, 1, {0, 1, 0, 0}},
    /* Pairs are formed latest first: with room for one, B->C. */
    {"max_pairs_per_user", {{0, A, 0, 1}, {0, B, 1, 1}, {0, C, 2, 1}}, 3, 24,
     6, 0, 0, 1, 0, 1, {{B, C, 0}}, 1, {0, 1, 0, 0}},
    /* top_n 1 keeps C (3 e^-1/6) over B (e^-1/6). */
    {"top_n", {{0, A, 0, 1}, {0, B, 1, 1}, {1, A, 0, 1}, {1, C, 1, 3}}, 4, 24,
     6, 0, 0, 0, 1, 1, {{A, C, 0}}, 1, {1, 0, 0, 0}},
};

/* Hand-computed scores for the cases that left them 0 above. */
static double covis_expected(const char *name, uint32_t x, uint32_t y)
{
    double e1 = exp(-1.0 / 6), e2 = exp(-2.0 / 6);
    if (!strcmp(name, "directed"))
        return x == A ? 3 * e1 + 1 : e2 + 1;
    if (!strcmp(name, "symmetric"))
        return x == A ? 3 * e1 + 3 * e2 + 1 : e1 + e2 + 1;
    if (!strcmp(name, "window_30h"))
        return x == A ? exp(-30.0 / 6) : exp(-29.0 / 6);
    if (!strcmp(name, "per_user_max")) return e1;
    if (!strcmp(name, "max_events_per_user")) return e1;
    if (!strcmp(name, "max_pairs_per_user")) return e1;
    if (!strcmp(name, "top_n")) return 3 * e1;
    (void)y;
    return -1;
}

static void case_opts(const covis_case *tc, rk_covis_opts *o)
{
    rk_covis_opts_default(o);
    o->window_ms = (int64_t)(tc->window_h * H);
    o->tau_ms = tc->tau_h * H;
    o->symmetric = tc->symmetric;
    if (tc->max_events_per_user) o->max_events_per_user = tc->max_events_per_user;
    if (tc->max_pairs_per_user) o->max_pairs_per_user = tc->max_pairs_per_user;
    if (tc->top_n) o->top_n = tc->top_n;
}

static int build_case(const covis_case *tc, const rk_covis_opts *o,
                      rk_covis **out, rk_err *err)
{
    uint32_t users[8], items[8];
    int64_t ts[8];
    float w[8];
    for (size_t k = 0; k < tc->nev; k++) {
        users[k] = tc->ev[k].u;
        items[k] = tc->ev[k].i;
        ts[k] = T0 + (int64_t)(tc->ev[k].hours * H);
        w[k] = tc->ev[k].w;
    }
    return rk_covis_build_from_events(out, 4, 4, users, items, ts, w, tc->nev,
                                      o, err);
}

static double nbr(const rk_covis *c, uint32_t x, uint32_t y)
{
    const uint32_t *it;
    const float *sc;
    size_t n;
    rk_covis_neighbors(c, x, &it, &sc, &n);
    for (size_t k = 0; k < n; k++)
        if (it[k] == y) return sc[k];
    return -1;
}

static int same_lists(const rk_covis *a, const rk_covis *b)
{
    if (rk_covis_nitems(a) != rk_covis_nitems(b)) return 0;
    for (uint32_t x = 0; x < rk_covis_nitems(a); x++) {
        const uint32_t *ia, *ib;
        const float *sa, *sb;
        size_t na, nb;
        rk_covis_neighbors(a, x, &ia, &sa, &na);
        rk_covis_neighbors(b, x, &ib, &sb, &nb);
        if (na != nb) return 0;
        for (size_t k = 0; k < na; k++)
            if (ia[k] != ib[k] || fabsf(sa[k] - sb[k]) > 1e-6f * (1 + sa[k]))
                return 0;
    }
    return 1;
}

TEST(covis_hand_computed)
{
    for (size_t t = 0; t < sizeof covis_cases / sizeof *covis_cases; t++) {
        const covis_case *tc = &covis_cases[t];
        rk_covis_opts o;
        case_opts(tc, &o);
        rk_err err = {0};
        rk_covis *c;
        CHECK_OK(build_case(tc, &o, &c, &err));
        int ok = 1;
        for (uint32_t x = 0; x < 4; x++) {
            const uint32_t *it;
            const float *sc;
            size_t n;
            rk_covis_neighbors(c, x, &it, &sc, &n);
            if (n != tc->count[x]) {
                fprintf(stderr, "  %s: item %u has %zu neighbours, expected %u\n",
                        tc->name, x, n, tc->count[x]);
                ok = 0;
            }
            for (size_t k = 0; k < n; k++)
                if (it[k] == x || !(sc[k] > 0) || (k && sc[k] > sc[k - 1])) ok = 0;
        }
        for (size_t k = 0; k < tc->nexpect; k++) {
            const tpair *p = &tc->expect[k];
            double want = p->score ? p->score : covis_expected(tc->name, p->x, p->y);
            double got = nbr(c, p->x, p->y);
            if (!close_to(got, want)) {
                fprintf(stderr, "  %s: covis(%u -> %u) = %.9g, expected %.9g\n",
                        tc->name, p->x, p->y, got, want);
                ok = 0;
            }
        }
        /* The matrix form (one event per pair at first_ts) must agree. */
        if (tc->unique) {
            uint32_t users[8], items[8];
            int64_t ts[8];
            float w[8];
            for (size_t k = 0; k < tc->nev; k++) {
                users[k] = tc->ev[k].u;
                items[k] = tc->ev[k].i;
                ts[k] = T0 + (int64_t)(tc->ev[k].hours * H);
                w[k] = tc->ev[k].w;
            }
            rk_interactions *m;
            CHECK_OK(rk_interactions_from_triplets(&m, 4, 4, users, items, w, ts,
                                                   tc->nev, &err));
            rk_covis *c2;
            int rc = rk_covis_build(&c2, m, &o, &err);
            rk_interactions_free(m);
            if (rc == 0) {
                if (!same_lists(c, c2)) {
                    fprintf(stderr, "  %s: matrix build differs\n", tc->name);
                    ok = 0;
                }
                rk_covis_destroy(c2);
            }
            if (rc) {
                rk_covis_destroy(c);
                CHECK_OK(rc);
            }
        }
        rk_covis_destroy(c);
        CHECK(ok);
    }
}

/* Random histories: the result does not depend on the pair buffer's size
 * (one pass, several slices of items, one pass per item) nor on the run. */
TEST(covis_bounded_buffer_same_result)
{
    enum { NU = 60, NI = 40, NE = 1500 };
    static uint32_t users[NE], items[NE];
    static int64_t ts[NE];
    static float w[NE];
    uint64_t x = 12345;
    for (int k = 0; k < NE; k++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        users[k] = (uint32_t)(x >> 33) % NU;
        items[k] = (uint32_t)(x >> 40) % NI;
        ts[k] = T0 + (int64_t)((x >> 20) % (72 * H));
        w[k] = 1 + (float)((x >> 13) % 3);
    }
    rk_covis_opts o;
    rk_covis_opts_default(&o);
    o.top_n = 10;
    rk_err err = {0};
    rk_covis *big, *small, *mid, *again;
    CHECK_OK(rk_covis_build_from_events(&big, NU, NI, users, items, ts, w, NE,
                                        &o, &err));
    /* ~10k contributions, ~250 per item: 64 forces one pass per item,
     * 600 slices of two or three items. */
    o.max_buffer_pairs = 64;
    int rc = rk_covis_build_from_events(&small, NU, NI, users, items, ts, w, NE,
                                        &o, &err);
    if (rc) rk_covis_destroy(big);
    CHECK_OK(rc);
    o.max_buffer_pairs = 600;
    rc = rk_covis_build_from_events(&mid, NU, NI, users, items, ts, w, NE, &o,
                                    &err);
    if (rc) {
        rk_covis_destroy(big);
        rk_covis_destroy(small);
    }
    CHECK_OK(rc);
    int same_mid = same_lists(big, mid);
    rk_covis_destroy(mid);
    o.max_buffer_pairs = 16u << 20;
    rc = rk_covis_build_from_events(&again, NU, NI, users, items, ts, w, NE, &o,
                                    &err);
    int same = rc == 0 && same_lists(big, small) && same_lists(big, again);
    size_t total = 0;
    for (uint32_t i = 0; i < NI; i++) {
        const uint32_t *it;
        const float *sc;
        size_t n;
        rk_covis_neighbors(big, i, &it, &sc, &n);
        total += n;
        if (n > 10) same = 0;
    }
    rk_covis_destroy(big);
    rk_covis_destroy(small);
    if (rc == 0) rk_covis_destroy(again);
    CHECK_OK(rc);
    CHECK(same && same_mid);
    CHECK(total > NI * 5);
    /* Cosine normalization keeps the lists bounded by 1 per user pair. */
    o.norm = RK_COVIS_NORM_COSINE;
    CHECK_OK(rk_covis_build_from_events(&big, NU, NI, users, items, ts, w, NE,
                                        &o, &err));
    rk_covis_destroy(big);
}

TEST(covis_query_aggregates_and_excludes_seeds)
{
    /* Neighbours by hand: A->{B:3e1+1}, B->{A: e2+1} (the "directed" case). */
    rk_covis_opts o;
    case_opts(&covis_cases[0], &o);
    rk_err err = {0};
    rk_covis *c;
    CHECK_OK(build_case(&covis_cases[0], &o, &c, &err));
    double e1 = exp(-1.0 / 6), e2 = exp(-2.0 / 6);
    rk_candidate out[4];
    size_t n;
    rk_seed s1[] = {{A, 0.5f}};
    CHECK_OK(rk_covis_query(c, s1, 1, 4, out, &n));
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(out[0].item, B);
    CHECK_EQ_INT(out[0].source, RK_SRC_COVIS);
    CHECK_NEAR(out[0].score, 0.5 * (3 * e1 + 1));
    /* Both seeds: each is the other's neighbour, and both are left out. */
    rk_seed s2[] = {{A, 1}, {B, 1}};
    CHECK_OK(rk_covis_query(c, s2, 2, 4, out, &n));
    CHECK_EQ_INT(n, 0);
    /* Seeds out of range are ignored; k = 0 gives nothing. */
    rk_seed s3[] = {{99, 1}, {B, 2}};
    CHECK_OK(rk_covis_query(c, s3, 2, 4, out, &n));
    CHECK_EQ_INT(n, 1);
    CHECK_NEAR(out[0].score, 2 * (e2 + 1));
    CHECK_OK(rk_covis_query(c, s3, 2, 0, out, &n));
    CHECK_EQ_INT(n, 0);
    rk_covis_destroy(c);
}

TEST(covis_save_load_and_corruption)
{
    const char *dir = rk_test_tmpdir("gen-covis-file");
    char path[512];
    snprintf(path, sizeof path, "%s/covis.bin", dir);
    rk_covis_opts o;
    case_opts(&covis_cases[1], &o);
    rk_err err = {0};
    rk_covis *c, *l;
    CHECK_OK(build_case(&covis_cases[1], &o, &c, &err));
    CHECK_OK(rk_covis_save(c, path, &err));
    CHECK_OK(rk_covis_load(&l, path, &err));
    int same = same_lists(c, l);
    rk_covis_destroy(l);
    rk_covis_destroy(c);
    CHECK(same);

    FILE *f = fopen(path, "rb");
    CHECK(f);
    unsigned char buf[4096];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    CHECK(len > 64 && len < sizeof buf);
    /* Table: how the file is damaged and what loading must say. */
    struct {
        const char *what;
        size_t off;      /* byte to flip, or SIZE_MAX */
        size_t keep;     /* bytes to keep (truncation) */
        int code;
        const char *msg;
    } dmg[] = {
        {"flipped score byte", 0, 0, RK_ECORRUPT, "checksum"},
        {"bad magic", 1, 0, RK_ECORRUPT, "magic"},
        {"newer version", 8, 0, RK_EVERSION, "version"},
        {"truncated", SIZE_MAX, 40, RK_ECORRUPT, "size"},
        {"header only", SIZE_MAX, 20, RK_ECORRUPT, "truncated"},
    };
    dmg[0].off = len - 10;
    for (size_t t = 0; t < sizeof dmg / sizeof *dmg; t++) {
        unsigned char copy[4096];
        memcpy(copy, buf, len);
        size_t n = dmg[t].keep ? dmg[t].keep : len;
        if (dmg[t].off != SIZE_MAX) copy[dmg[t].off] ^= 0x5a;
        f = fopen(path, "wb");
        CHECK(f);
        fwrite(copy, 1, n, f);
        fclose(f);
        rk_err_clear(&err);
        int rc = rk_covis_load(&l, path, &err);
        if (rc != dmg[t].code || !strstr(err.msg, dmg[t].msg))
            fprintf(stderr, "  %s: %s: %s\n", dmg[t].what, rk_errname(rc), err.msg);
        CHECK_EQ_INT(rc, dmg[t].code);
        CHECK_CONTAINS(err.msg, dmg[t].msg);
    }
    snprintf(path, sizeof path, "%s/missing.bin", dir);
    CHECK_EQ_INT(rk_covis_load(&l, path, &err), RK_EIO);
    /* A content file is not a covis file. */
    rk_content_builder *b;
    rk_content *ct;
    CHECK_OK(rk_content_builder_create(&b, 2, NULL, &err));
    CHECK_OK(rk_content_builder_add(b, 0, "t=x", 3, 1, &err));
    CHECK_OK(rk_content_builder_add(b, 1, "t=x", 3, 1, &err));
    CHECK_OK(rk_content_builder_finish(b, &ct, &err));
    CHECK_OK(rk_content_save(ct, path, &err));
    rk_content_destroy(ct);
    CHECK_EQ_INT(rk_covis_load(&l, path, &err), RK_ECORRUPT);
    CHECK_OK(rk_content_load(&ct, path, &err));
    CHECK_EQ_INT(rk_content_nitems(ct), 2);
    rk_content_destroy(ct);
    rk_test_rmdir(dir);
}

TEST(covis_opts_from_conf)
{
    static const struct {
        const char *yaml;
        int code;
        const char *msg;
    } cases[] = {
        {"covis: {window_hours: 2, tau_hours: 0.5, symmetric: false, "
         "normalize: cosine, top_n: 7}", 0, NULL},
        {"covis: {windw_hours: 2}", RK_ECONFIG, "unknown key 'windw_hours'"},
        {"covis: {window_hours: -1}", RK_ECONFIG, "positive"},
        {"covis: {normalize: l2}", RK_ECONFIG, "cosine"},
        {"covis: {top_n: 0}", RK_ECONFIG, "top_n"},
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        rk_conf *cf;
        rk_err err = {0};
        CHECK_OK(rk_conf_parse_yaml(&cf, cases[t].yaml, strlen(cases[t].yaml),
                                    "t.yaml", &err));
        rk_covis_opts o;
        rk_covis_opts_default(&o);
        int rc = rk_covis_opts_from_conf(
            &o, rk_conf_get(rk_conf_root(cf), "covis"), &err);
        rk_conf_destroy(cf);
        CHECK_EQ_INT(rc, cases[t].code);
        if (cases[t].msg) CHECK_CONTAINS(err.msg, cases[t].msg);
        if (rc == 0) {
            CHECK_EQ_INT(o.window_ms, 2 * H);
            CHECK_NEAR(o.tau_ms, 0.5 * H);
            CHECK_EQ_INT(o.symmetric, 0);
            CHECK_EQ_INT(o.norm, RK_COVIS_NORM_COSINE);
            CHECK_EQ_INT(o.top_n, 7);
        }
    }
}

/* ======================================================================== */
/* Store fixtures                                                            */
/* ======================================================================== */

static rk_store *open_store(const char *dir, rk_err *err)
{
    rk_schema *sc;
    /* The default event types (click 1, like 3, impression, dislike...). */
    if (rk_schema_from_conf(&sc, NULL, err)) return NULL;
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "category", RK_ATTR_CATEGORICAL, 0, NULL);
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "tags", RK_ATTR_CATEGORICAL_LIST, 0, NULL);
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "title", RK_ATTR_TEXT, 0, NULL);
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "published", RK_ATTR_TIMESTAMP, 0, NULL);
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "price", RK_ATTR_NUMERIC, 0, NULL);
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = dir;
    o.map_size = 64 << 20;
    rk_store *s = NULL;
    int rc = rk_store_open(&s, &o, sc, err);
    rk_schema_destroy(sc);
    return rc ? NULL : s;
}

static int add_event(rk_batch *b, const char *type, const char *user,
                     const char *item, int64_t ts, rk_err *err)
{
    rk_event_in e = {0};
    e.type = type;
    e.user = user;
    e.item = item;
    e.ts_ms = ts;
    e.position = -1;
    return rk_batch_event(b, &e, err);
}

typedef struct titem {
    const char *id;
    const char *category;
    const char *tags[4];
    size_t ntags;
    const char *title;
    int64_t published; /* 0 = none */
    double price;
} titem;

static int add_item(rk_batch *b, const titem *it, rk_err *err)
{
    rk_attr_in a[5];
    size_t n = 0;
    if (it->category)
        a[n++] = (rk_attr_in){.name = "category", .type = RK_ATTR_CATEGORICAL,
                              .str = it->category, .len = strlen(it->category)};
    if (it->ntags)
        a[n++] = (rk_attr_in){.name = "tags", .type = RK_ATTR_CATEGORICAL_LIST,
                              .list = it->tags, .n = it->ntags};
    if (it->title)
        a[n++] = (rk_attr_in){.name = "title", .type = RK_ATTR_TEXT,
                              .str = it->title, .len = strlen(it->title)};
    if (it->published)
        a[n++] = (rk_attr_in){.name = "published", .type = RK_ATTR_TIMESTAMP,
                              .ts_ms = it->published};
    a[n++] = (rk_attr_in){.name = "price", .type = RK_ATTR_NUMERIC, .num = it->price};
    return rk_batch_upsert(b, RK_ENTITY_ITEM, it->id, a, n, 0, err);
}

static uint32_t item_id(rk_store *s, const char *ext)
{
    rk_reader *r;
    uint32_t id = UINT32_MAX;
    if (rk_store_reader(s, &r, NULL)) return id;
    rk_reader_lookup(r, RK_ENTITY_ITEM, ext, strlen(ext), &id);
    rk_reader_close(r);
    return id;
}

/* Events: the history of the "directed" case over i0 (A), i1 (B) and i2
 * (C), its weight-3 events being likes (weight 3 by default), plus events
 * that must never count: impressions and dislikes. Items: i3 hidden, i4
 * deleted, i5 a catalog item nobody has interacted with, i6 seen only in an
 * impression and without a published date. */
static int fill_store(rk_store *s, rk_err *err)
{
    rk_batch *b;
    int rc = rk_batch_create(&b, s, 0);
    if (rc) return rc;
    static const titem items[] = {
        {"i0", "news", {"politics", "europe"}, 2, "Elections in Europe", T0 + 5 * H, 1},
        {"i1", "news", {"politics", "europe", "economy"}, 3, "The euro and the economy", T0 + 9 * H, 2},
        {"i2", "sport", {"football"}, 1, "A football final", T0 + 1 * H, 3},
        {"i3", "news", {"politics", "europe"}, 2, "Elections in Europe again", T0 + 20 * H, 4},
        {"i4", "news", {"politics"}, 1, "Deleted story", T0 + 21 * H, 5},
        {"i5", "news", {"politics", "europe", "economy"}, 3, "Europe economy outlook", T0 + 8 * H, 6},
        {"i6", "sport", {"tennis"}, 1, "Of the and a", 0, 7},
    };
    for (size_t k = 0; rc == 0 && k < sizeof items / sizeof *items; k++)
        rc = add_item(b, &items[k], err);
    static const struct {
        const char *type, *user, *item;
        double hours;
    } evs[] = {
        {"click", "u0", "i0", 0}, {"like", "u0", "i1", 1}, {"click", "u0", "i2", 30},
        {"like", "u1", "i1", 0}, {"click", "u1", "i0", 2},
        {"click", "u2", "i0", 0}, {"click", "u2", "i1", 0},
        /* Never feedback for pairs: */
        {"impression", "u3", "i0", 0}, {"impression", "u3", "i2", 0},
        {"dislike", "u4", "i0", 0}, {"dislike", "u4", "i2", 1},
        /* The first sighting of i6 (no published date). */
        {"impression", "u5", "i6", 3},
    };
    for (size_t k = 0; rc == 0 && k < sizeof evs / sizeof *evs; k++)
        rc = add_event(b, evs[k].type, evs[k].user, evs[k].item,
                       T0 + (int64_t)(evs[k].hours * H), err);
    if (rc == 0) rc = rk_store_write(s, b, NULL, err);
    rk_batch_clear(b);
    if (rc == 0) rc = rk_batch_hide(b, RK_ENTITY_ITEM, "i3", 1, err);
    if (rc == 0) rc = rk_batch_delete(b, RK_ENTITY_ITEM, "i4", err);
    if (rc == 0) rc = rk_store_write(s, b, NULL, err);
    rk_batch_destroy(b);
    return rc;
}

TEST(covis_from_store)
{
    const char *dir = rk_test_tmpdir("gen-covis-store");
    rk_err err = {0};
    rk_store *s = open_store(dir, &err);
    CHECK(s);
    int rc = fill_store(s, &err);
    if (rc) rk_store_close(s);
    CHECK_OK(rc);
    uint32_t i0 = item_id(s, "i0"), i1 = item_id(s, "i1"), i2 = item_id(s, "i2");
    rk_covis_opts o;
    case_opts(&covis_cases[0], &o);
    rk_covis *c, *last4;
    rc = rk_covis_build_from_store(&c, s, NULL, &o, &err);
    /* Keeping only the last 4 accepted events (u1's two and u2's two)
     * wraps the ring: u0's history is gone. */
    o.max_events = 4;
    if (rc == 0 && (rc = rk_covis_build_from_store(&last4, s, NULL, &o, &err)))
        rk_covis_destroy(c);
    rk_store_close(s);
    CHECK_OK(rc);
    int ok4 = close_to(nbr(last4, i0, i1), 1) &&
              close_to(nbr(last4, i1, i0), exp(-2.0 / 6) + 1);
    rk_covis_destroy(last4);
    if (!ok4) rk_covis_destroy(c);
    CHECK(ok4);
    /* "like" weighs 3, as in the hand-computed directed case. */
    double e1 = exp(-1.0 / 6), e2 = exp(-2.0 / 6);
    int ok = close_to(nbr(c, i0, i1), 3 * e1 + 1) &&
             close_to(nbr(c, i1, i0), e2 + 1) && nbr(c, i0, i2) < 0 &&
             nbr(c, i2, i0) < 0;
    const uint32_t *it;
    const float *sc;
    size_t n;
    rk_covis_neighbors(c, i2, &it, &sc, &n);
    rk_covis_destroy(c);
    CHECK(ok);
    CHECK_EQ_INT(n, 0);
    rk_test_rmdir(dir);
}

/* ======================================================================== */
/* Trending, popular, fresh                                                  */
/* ======================================================================== */

typedef struct trend_case {
    const char *name;
    double now_h;          /* hours after T0; -1 = default (latest event) */
    double half_life_h;
    double trending[3];    /* expected per item */
    uint32_t order[3];     /* expected trending list */
    size_t norder;
} trend_case;

TEST(trending_decay_hand_computed)
{
    /* item 0: w1 at +48 h and w1 at +24 h; item 1: w3 at T0; item 2: w0.5
     * at +47 h and w5 at +72 h (after now in the first cases). */
    static const uint32_t items[] = {0, 0, 1, 2, 2};
    static const double hours[] = {48, 24, 0, 47, 72};
    static const float w[] = {1, 1, 3, 0.5f, 5};
    int64_t ts[5];
    for (int k = 0; k < 5; k++) ts[k] = T0 + (int64_t)(hours[k] * H);
    const trend_case cases[] = {
        {"now_48h_hl_24h", 48, 24, {1.5, 0.75, 0.5 * exp2(-1.0 / 24)}, {0, 1, 2}, 3},
        {"now_48h_hl_12h", 48, 12, {1 + 0.25, 3.0 / 16, 0.5 * exp2(-1.0 / 12)}, {0, 2, 1}, 3},
        {"latest_is_72h", -1, 24,
         {0.5 + 0.25, 3.0 / 8, 5 + 0.5 * exp2(-25.0 / 24)}, {2, 0, 1}, 3},
        {"before_everything", -48, 24, {0, 0, 0}, {0}, 0},
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        const trend_case *tc = &cases[t];
        rk_popular_opts o;
        rk_popular_opts_default(&o);
        o.now_ms = tc->now_h == -1 ? 0 : T0 + (int64_t)(tc->now_h * H);
        o.half_life_ms = tc->half_life_h * H;
        rk_err err = {0};
        rk_popular *p;
        CHECK_OK(rk_popular_build(&p, 3, items, ts, w, 5, &o, &err));
        int ok = 1;
        for (uint32_t i = 0; i < 3; i++)
            if (!close_to(rk_popular_score(p, RK_POPULAR_TRENDING, i), tc->trending[i])) {
                fprintf(stderr, "  %s: trending(%u) = %.9g, expected %.9g\n",
                        tc->name, i, rk_popular_score(p, RK_POPULAR_TRENDING, i),
                        tc->trending[i]);
                ok = 0;
            }
        size_t n;
        const rk_candidate *l = rk_popular_list(p, RK_POPULAR_TRENDING, &n);
        if (n != tc->norder) ok = 0;
        for (size_t k = 0; ok && k < n; k++)
            ok = l[k].item == tc->order[k] && l[k].source == RK_SRC_TRENDING;
        if (tc->now_h == -1 && rk_popular_now(p) != T0 + 72 * H) ok = 0;
        rk_popular_destroy(p);
        if (!ok) fprintf(stderr, "  case %s\n", tc->name);
        CHECK(ok);
    }
}

TEST(popular_all_time_order)
{
    /* Ties go to the smaller item; events after now do not count. */
    static const uint32_t items[] = {3, 1, 1, 2, 2, 0, 3, 3};
    static const float w[] = {1, 2, 2, 4, 0.5f, 4, 1, 1};
    static const double hours[] = {0, 1, 2, 3, 4, 5, 6, 100};
    int64_t ts[8];
    for (int k = 0; k < 8; k++) ts[k] = T0 + (int64_t)(hours[k] * H);
    rk_popular_opts o;
    rk_popular_opts_default(&o);
    o.now_ms = T0 + 10 * H;
    o.top_n = 3;
    rk_err err = {0};
    rk_popular *p;
    CHECK_OK(rk_popular_build(&p, 5, items, ts, w, 8, &o, &err));
    size_t n;
    const rk_candidate *l = rk_popular_list(p, RK_POPULAR_ALL_TIME, &n);
    /* 2: 4.5, 0: 4, 1: 4, 3: 2 (the +100 h event is in the future). */
    int ok = n == 3 && l[0].item == 2 && l[1].item == 0 && l[2].item == 1 &&
             l[0].score == 4.5f && l[0].source == RK_SRC_POPULAR &&
             rk_popular_score(p, RK_POPULAR_ALL_TIME, 3) == 2 &&
             rk_popular_score(p, RK_POPULAR_ALL_TIME, 4) == 0 &&
             rk_popular_score(p, RK_POPULAR_ALL_TIME, 99) == 0;
    rk_popular_destroy(p);
    CHECK(ok);
    /* A bad item is an error, not a crash. */
    uint32_t bad = 7;
    CHECK_EQ_INT(rk_popular_build(&p, 5, &bad, ts, NULL, 1, &o, &err), RK_EINVAL);
    o.half_life_ms = 0;
    CHECK_EQ_INT(rk_popular_build(&p, 5, items, ts, w, 8, &o, &err), RK_EINVAL);
}

TEST(popular_from_store_and_matrix)
{
    const char *dir = rk_test_tmpdir("gen-pop-store");
    rk_err err = {0};
    rk_store *s = open_store(dir, &err);
    CHECK(s);
    int rc = fill_store(s, &err);
    rk_popular *p = NULL, *q = NULL;
    rk_interactions *m = NULL;
    if (rc == 0) rc = rk_popular_build_from_store(&p, s, NULL, NULL, &err);
    if (rc == 0) rc = rk_interactions_from_store(&m, s, NULL, &err);
    uint32_t i0 = item_id(s, "i0"), i1 = item_id(s, "i1"), i2 = item_id(s, "i2");
    rk_store_close(s);
    if (rc == 0) rc = rk_popular_build_from_interactions(&q, m, NULL, &err);
    rk_interactions_free(m);
    if (rc) {
        rk_popular_destroy(p);
        CHECK_OK(rc);
    }
    /* i0: three clicks = 3; i1: likes of u0 and u1 (3 each) and u2's click
     * = 7; i2: one click. Impressions and dislikes never count. */
    int ok = rk_popular_score(p, RK_POPULAR_ALL_TIME, i0) == 3 &&
             rk_popular_score(p, RK_POPULAR_ALL_TIME, i1) == 7 &&
             rk_popular_score(p, RK_POPULAR_ALL_TIME, i2) == 1 &&
             rk_popular_now(p) == T0 + 30 * H;
    size_t n;
    const rk_candidate *l = rk_popular_list(p, RK_POPULAR_ALL_TIME, &n);
    ok = ok && n == 3 && l[0].item == i1 && l[1].item == i0 && l[2].item == i2;
    /* The matrix gives the same sums: each (user, item) once with its
     * summed weight, at its last event. */
    ok = ok && rk_popular_score(q, RK_POPULAR_ALL_TIME, i1) == 7 &&
         rk_popular_score(q, RK_POPULAR_ALL_TIME, i0) == 3;
    rk_popular_destroy(p);
    rk_popular_destroy(q);
    CHECK(ok);
    rk_test_rmdir(dir);
}

TEST(fresh_order_and_exclusions)
{
    const int64_t U = INT64_MIN;
    /* 0: +0 h; 1: +10 h; 2: unknown; 3: +5 h but blocked; 4: +20 h (after
     * now = +15 h); 5: +10 h (ties with 1); 6: -100 h (older than 50 h). */
    const int64_t ts[] = {T0, T0 + 10 * H, U, T0 + 5 * H, T0 + 20 * H,
                          T0 + 10 * H, T0 - 100 * H};
    uint64_t blocked[1] = {1u << 3};
    static const struct {
        const char *name;
        int64_t now_h;      /* -1000 = default */
        int64_t max_age_h;
        uint32_t top_n;
        uint32_t order[6];
        size_t n;
    } cases[] = {
        {"now_15h_max_age", 15, 50, 10, {1, 5, 0}, 3},
        {"now_15h_all_ages", 15, 0, 10, {1, 5, 0, 6}, 4},
        {"default_now_is_newest", -1000, 0, 10, {4, 1, 5, 0, 6}, 5},
        {"top_n_2", 15, 0, 2, {1, 5}, 2},
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        rk_fresh_opts o;
        rk_fresh_opts_default(&o);
        o.now_ms = cases[t].now_h == -1000 ? 0 : T0 + cases[t].now_h * H;
        o.max_age_ms = cases[t].max_age_h * H;
        o.half_life_ms = 10.0 * H;
        o.top_n = cases[t].top_n;
        rk_err err = {0};
        rk_fresh *f;
        CHECK_OK(rk_fresh_build(&f, 7, ts, blocked, &o, &err));
        size_t n;
        const rk_candidate *l = rk_fresh_list(f, &n);
        int ok = n == cases[t].n;
        for (size_t k = 0; ok && k < n; k++)
            ok = l[k].item == cases[t].order[k] && l[k].source == RK_SRC_FRESH;
        /* Score = 2^(-age / 10 h). */
        if (ok && t == 0)
            ok = close_to(l[0].score, exp2(-0.5)) && close_to(l[2].score, exp2(-1.5));
        if (ok && t == 2) ok = rk_fresh_now(f) == T0 + 20 * H && l[0].score == 1;
        rk_fresh_destroy(f);
        if (!ok) fprintf(stderr, "  case %s\n", cases[t].name);
        CHECK(ok);
    }
}

TEST(fresh_from_store)
{
    const char *dir = rk_test_tmpdir("gen-fresh-store");
    rk_err err = {0};
    rk_store *s = open_store(dir, &err);
    CHECK(s);
    int rc = fill_store(s, &err);
    rk_fresh *f = NULL;
    rk_fresh_opts o;
    rk_fresh_opts_default(&o);
    if (rc == 0) rc = rk_fresh_build_from_store(&f, s, &o, &err);
    /* Items by published: i1 +9, i5 +8, i0 +5, i6 first seen +3, i2 +1;
     * i3 (hidden, +20) and i4 (deleted, +21) are left out. */
    const char *want[] = {"i1", "i5", "i0", "i6", "i2"};
    uint32_t ids[5];
    for (int k = 0; k < 5; k++) ids[k] = item_id(s, want[k]);
    /* A non-timestamp attribute is a configuration error. */
    rk_fresh *g = NULL;
    o.attr = "price";
    int rc2 = rk_fresh_build_from_store(&g, s, &o, &err);
    o.attr = "nope";
    o.first_seen_fallback = 0;
    int rc3 = rk_fresh_build_from_store(&g, s, &o, &err);
    rk_store_close(s);
    CHECK_OK(rc);
    size_t n;
    const rk_candidate *l = rk_fresh_list(f, &n);
    int ok = n == 5;
    for (size_t k = 0; ok && k < n; k++) ok = l[k].item == ids[k];
    ok = ok && rk_fresh_now(f) == T0 + 9 * H;
    rk_fresh_destroy(f);
    CHECK(ok);
    CHECK_EQ_INT(rc2, RK_ECONFIG);
    CHECK_EQ_INT(rc3, RK_ECONFIG);
    rk_test_rmdir(dir);
}

/* ======================================================================== */
/* Content similarity                                                        */
/* ======================================================================== */

static double cnbr(const rk_content *c, uint32_t x, uint32_t y)
{
    const uint32_t *it;
    const float *sc;
    size_t n;
    rk_content_neighbors(c, x, &it, &sc, &n);
    for (size_t k = 0; k < n; k++)
        if (it[k] == y) return sc[k];
    return -1;
}

static int build_tokens(rk_content **out, uint32_t nitems,
                        const char *const *tokens /* "item token" */,
                        size_t n, const rk_content_opts *o)
{
    rk_err err = {0};
    rk_content_builder *b;
    int rc = rk_content_builder_create(&b, nitems, o, &err);
    if (rc) return rc;
    for (size_t k = 0; k < n; k++) {
        const char *sp = strchr(tokens[k], ' ');
        uint32_t item = (uint32_t)atoi(tokens[k]);
        rc = rk_content_builder_add(b, item, sp + 1, strlen(sp + 1), 1, &err);
        if (rc) {
            rk_content_builder_destroy(b);
            return rc;
        }
    }
    return rk_content_builder_finish(b, out, &err);
}

TEST(content_tfidf_hand_computed)
{
    /* 0: {a, r}; 1: {a}; 2: {r}; 3: {a}. N = 4, df(a) = 3, df(r) = 2. */
    static const char *const toks[] = {"0 t=a", "0 t=r", "1 t=a", "2 t=r", "3 t=a"};
    rk_content *c;
    CHECK_OK(build_tokens(&c, 4, toks, 5, NULL));
    double ia = log(5.0 / 4) + 1, ir = log(5.0 / 3) + 1;
    double n0 = sqrt(ia * ia + ir * ir);
    int ok = close_to(cnbr(c, 0, 1), ia / n0) && close_to(cnbr(c, 0, 2), ir / n0) &&
             close_to(cnbr(c, 0, 3), ia / n0) && close_to(cnbr(c, 1, 3), 1) &&
             cnbr(c, 1, 2) < 0 && cnbr(c, 0, 0) < 0;
    /* The rarer shared token ranks first; equal scores by item id. */
    const uint32_t *it;
    const float *sc;
    size_t n;
    rk_content_neighbors(c, 0, &it, &sc, &n);
    ok = ok && n == 3 && it[0] == 2 && it[1] == 1 && it[2] == 3;
    /* "similar to" copies at most k. */
    rk_candidate out[2];
    size_t m = rk_content_similar(c, 0, 2, out);
    ok = ok && m == 2 && out[0].item == 2 && out[0].source == RK_SRC_CONTENT;
    /* Query: seeds' similarities summed, seeds left out. */
    rk_seed seeds[] = {{1, 1}, {2, 1}};
    rk_candidate q[4];
    CHECK_OK(rk_content_query(c, seeds, 2, 4, q, &m));
    ok = ok && m == 2 && q[0].item == 0 && close_to(q[0].score, (ia + ir) / n0) &&
         q[1].item == 3 && close_to(q[1].score, 1);
    rk_content_destroy(c);
    CHECK(ok);
}

TEST(content_caps_and_options)
{
    static const char *const toks[] = {
        "0 t=a", "0 t=b", "0 t=c", "1 t=a", "1 t=b", "1 t=c",
        "2 t=a", "3 t=a", "4 t=a", "5 t=b", "6 t=z", "6 t=z"};
    rk_content_opts o;
    rk_content_opts_default(&o);
    rk_content *c;
    /* top_n 1: only the best neighbour. */
    o.top_n = 1;
    CHECK_OK(build_tokens(&c, 7, toks, 12, &o));
    const uint32_t *it;
    const float *sc;
    size_t n;
    rk_content_neighbors(c, 0, &it, &sc, &n);
    int ok = n == 1 && it[0] == 1 && close_to(sc[0], 1);
    rk_content_neighbors(c, 6, &it, &sc, &n);
    ok = ok && n == 0; /* its only token is its own */
    rk_content_destroy(c);
    CHECK(ok);
    /* max_df_ratio: "a" is in 5 of 7 items; dropping it leaves 2..4 with
     * nothing and 0 with b and c. */
    rk_content_opts_default(&o);
    o.max_df_ratio = 0.5;
    CHECK_OK(build_tokens(&c, 7, toks, 12, &o));
    ok = cnbr(c, 0, 2) < 0 && cnbr(c, 0, 1) > 0 && cnbr(c, 2, 3) < 0;
    rk_content_destroy(c);
    CHECK(ok);
    /* max_postings 1: each token walks only its heaviest item. */
    rk_content_opts_default(&o);
    o.max_postings = 1;
    CHECK_OK(build_tokens(&c, 7, toks, 12, &o));
    rk_content_neighbors(c, 3, &it, &sc, &n);
    ok = n <= 1;
    rk_content_destroy(c);
    CHECK(ok);
    /* max_vocab bounds the vocabulary. */
    rk_content_opts_default(&o);
    o.max_vocab = 2;
    CHECK_EQ_INT(build_tokens(&c, 7, toks, 12, &o), RK_ELIMIT);
    /* min_sim: only near-duplicates. */
    rk_content_opts_default(&o);
    o.min_sim = 0.99f;
    CHECK_OK(build_tokens(&c, 7, toks, 12, &o));
    ok = cnbr(c, 0, 1) > 0.99 && cnbr(c, 0, 2) < 0;
    rk_content_destroy(c);
    CHECK(ok);
    /* Bad input. */
    rk_err err = {0};
    rk_content_builder *b;
    CHECK_OK(rk_content_builder_create(&b, 2, NULL, &err));
    CHECK_EQ_INT(rk_content_builder_add(b, 2, "x", 1, 1, &err), RK_EINVAL);
    CHECK_EQ_INT(rk_content_builder_add(b, 0, "", 0, 1, &err), RK_EINVAL);
    CHECK_EQ_INT(rk_content_builder_add(b, 0, "x", 1, -1, &err), RK_EINVAL);
    rk_content_builder_destroy(b);
}

TEST(content_from_store_tags_text_cold_items)
{
    const char *dir = rk_test_tmpdir("gen-content-store");
    rk_err err = {0};
    rk_store *s = open_store(dir, &err);
    CHECK(s);
    int rc = fill_store(s, &err);
    rk_content *c = NULL;
    if (rc == 0) rc = rk_content_build_from_store(&c, s, NULL, &err);
    uint32_t id[7];
    for (int k = 0; k < 7; k++) {
        char ext[4];
        snprintf(ext, sizeof ext, "i%d", k);
        id[k] = item_id(s, ext);
    }
    /* Configured attributes: unknown and wrongly typed ones are refused. */
    rk_content_attr bad1[] = {{"nope", 1}}, bad2[] = {{"price", 1}};
    rk_content_opts o;
    rk_content_opts_default(&o);
    o.attrs = bad1;
    o.nattrs = 1;
    rk_content *x = NULL;
    int rc1 = rk_content_build_from_store(&x, s, &o, &err);
    o.attrs = bad2;
    int rc2 = rk_content_build_from_store(&x, s, &o, &err);
    /* Tags only, weighted: i1 and i5 share all three tags. */
    rk_content_attr tags[] = {{"tags", 2}};
    o.attrs = tags;
    rk_content *t = NULL;
    int rc3 = rk_content_build_from_store(&t, s, &o, &err);
    rk_store_close(s);
    CHECK_OK(rc);
    CHECK_EQ_INT(rc1, RK_ECONFIG);
    CHECK_EQ_INT(rc2, RK_ECONFIG);
    if (rc3) rk_content_destroy(c);
    CHECK_OK(rc3);
    const uint32_t *it;
    const float *sc;
    size_t n;
    /* i5 has no events at all, yet has neighbours: i1 first (same
     * category, all three tags, "europe"/"economy" in both titles). */
    rk_content_neighbors(c, id[5], &it, &sc, &n);
    int ok = n >= 2 && it[0] == id[1] && it[1] == id[0];
    /* The hidden i3 and deleted i4 are nobody's neighbour, and have none. */
    for (uint32_t i = 0; i < rk_content_nitems(c); i++)
        if (cnbr(c, i, id[3]) >= 0 || cnbr(c, i, id[4]) >= 0) ok = 0;
    rk_content_neighbors(c, id[3], &it, &sc, &n);
    ok = ok && n == 0;
    /* Sport items share only the category with each other, not with news;
     * i6's title is all stop words. */
    ok = ok && cnbr(c, id[2], id[6]) > 0 && cnbr(c, id[2], id[0]) < 0;
    /* Tags only: identical tag sets have similarity 1. */
    ok = ok && close_to(cnbr(t, id[5], id[1]), 1) && cnbr(t, id[2], id[6]) < 0;
    rk_content_destroy(c);
    rk_content_destroy(t);
    CHECK(ok);
    rk_test_rmdir(dir);
}

TEST(content_text_tokenizer)
{
    /* Built from hand-made views so the tokenizer is tested alone. */
    rk_schema *sc;
    CHECK_OK(rk_schema_create(&sc));
    rk_err err = {0};
    CHECK_OK(rk_schema_add_attr(sc, RK_ENTITY_ITEM, "title", RK_ATTR_TEXT, 0, &err));
    CHECK_OK(rk_schema_add_attr(sc, RK_ENTITY_ITEM, "n", RK_ATTR_NUMERIC, 0, &err));
    static const struct {
        const char *text;
    } texts[] = {
        {"The QUICK, brown fox!"},        /* quick brown fox */
        {"quick... Brown\tdog"},           /* quick brown dog */
        {"of the and a I"},                /* nothing */
        {"Café crème brûlée"},             /* UTF-8 words survive */
        {"café"},
        {"x-y-z 42 42"},                   /* one-letter words dropped; 42 */
        {"42"},
    };
    enum { NT = sizeof texts / sizeof *texts };
    rk_content_builder *b;
    CHECK_OK(rk_content_builder_create(&b, NT, NULL, &err));
    for (uint32_t i = 0; i < NT; i++) {
        rk_attr_val av[2] = {
            {.attr = 0, .type = RK_ATTR_TEXT, .str = texts[i].text,
             .len = (uint32_t)strlen(texts[i].text)},
            {.attr = 1, .type = RK_ATTR_NUMERIC, .num = 5}};
        rk_entity_view v = {.id = i, .nattrs = 2, .attrs = av};
        int rc = rk_content_builder_add_view(b, sc, &v, &err);
        if (rc) rk_content_builder_destroy(b);
        CHECK_OK(rc);
    }
    rk_content *c;
    CHECK_OK(rk_content_builder_finish(b, &c, &err));
    rk_schema_destroy(sc);
    const uint32_t *it;
    const float *s;
    size_t n;
    rk_content_neighbors(c, 2, &it, &s, &n);
    int ok = n == 0 && cnbr(c, 0, 1) > 0 && cnbr(c, 0, 3) < 0 &&
             cnbr(c, 3, 4) > 0 && cnbr(c, 5, 6) > 0 && cnbr(c, 0, 5) < 0;
    /* 0 and 1 share "quick" and "brown" (df 2 of 6 items with tokens);
     * "fox" and "dog" are their own (df 1). */
    double a = log(7.0 / 3) + 1, b1 = log(7.0 / 2) + 1;
    ok = ok && close_to(cnbr(c, 0, 1), 2 * a * a / (2 * a * a + b1 * b1));
    rk_content_destroy(c);
    CHECK(ok);
}

TEST(content_threads_same_result)
{
    enum { NI = 3000, NTOK = 40 };
    rk_content *one, *many;
    rk_content_opts o;
    rk_content_opts_default(&o);
    o.top_n = 8;
    char tok[32];
    rk_content *res[2];
    rk_pool *pool;
    CHECK_OK(rk_pool_create(&pool, 4, 0));
    for (int pass = 0; pass < 2; pass++) {
        o.pool = pass ? pool : NULL;
        rk_err err = {0};
        rk_content_builder *b;
        CHECK_OK(rk_content_builder_create(&b, NI, &o, &err));
        uint64_t x = 99;
        for (uint32_t i = 0; i < NI; i++)
            for (int k = 0; k < 4; k++) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                snprintf(tok, sizeof tok, "tag=%u", (unsigned)((x >> 33) % NTOK));
                CHECK_OK(rk_content_builder_add(b, i, tok, strlen(tok), 1, &err));
            }
        CHECK_OK(rk_content_builder_finish(b, &res[pass], &err));
    }
    rk_pool_destroy(pool);
    one = res[0];
    many = res[1];
    int same = 1;
    for (uint32_t i = 0; i < NI && same; i++) {
        const uint32_t *ia, *ib;
        const float *sa, *sb;
        size_t na, nb;
        rk_content_neighbors(one, i, &ia, &sa, &na);
        rk_content_neighbors(many, i, &ib, &sb, &nb);
        same = na == nb && na == 8 && !memcmp(ia, ib, na * 4) && !memcmp(sa, sb, na * 4);
    }
    rk_content_destroy(one);
    rk_content_destroy(many);
    CHECK(same);
}

/* ======================================================================== */
/* Merger                                                                    */
/* ======================================================================== */

static const rk_candidate LA[] = {{1, 0.9f, RK_SRC_COVIS, 0, 0}, {2, 0.8f, RK_SRC_COVIS, 0, 0},
                                  {3, 0.7f, RK_SRC_COVIS, 0, 0}, {4, 0.6f, RK_SRC_COVIS, 0, 0}};
static const rk_candidate LB[] = {{2, 50, RK_SRC_TRENDING, 0, 0}, {5, 40, RK_SRC_TRENDING, 0, 0},
                                  {6, 10, RK_SRC_TRENDING, 0, 0}};
static const rk_candidate LC[] = {{7, 1, RK_SRC_FRESH, 0, 0}, {8, 1, RK_SRC_FRESH, 0, 0}};

typedef struct reject_list {
    const uint32_t *items;
    size_t n;
} reject_list;

static int reject_keep(void *arg, uint32_t item)
{
    const reject_list *r = arg;
    for (size_t k = 0; k < r->n; k++)
        if (r->items[k] == item) return 0;
    return 1;
}

typedef struct merge_case {
    const char *name;
    rk_merge_mode mode;
    uint32_t quota[3];
    float weight[3];
    size_t n;
    uint32_t seen[2], exclude[2], blocked[2], reject[2];
    size_t nseen, nexclude, nblocked, nreject;
    uint32_t items[8];
    uint8_t sources[8];
    size_t nout;
} merge_case;

#define S_A RK_SRC_COVIS
#define S_B RK_SRC_TRENDING
#define S_C RK_SRC_FRESH

static const merge_case merge_cases[] = {
    /* Turns by quota share: A, B, C, then A again; A's 2 went to B first,
     * so A skips it. */
    {"interleave", RK_MERGE_INTERLEAVE, {2, 1, 1}, {0}, 10, {0}, {0}, {0}, {0},
     0, 0, 0, 0, {1, 2, 7, 3}, {S_A, S_B, S_C, S_A}, 4},
    {"n_cap", RK_MERGE_INTERLEAVE, {2, 1, 1}, {0}, 2, {0}, {0}, {0}, {0}, 0, 0,
     0, 0, {1, 2}, {S_A, S_B}, 2},
    /* Quotas 4:2 interleave A B A A B; C is off; A runs out. */
    {"proportional", RK_MERGE_INTERLEAVE, {4, 2, 0}, {0}, 6, {0}, {0}, {0},
     {0}, 0, 0, 0, 0, {1, 2, 3, 4, 5}, {S_A, S_B, S_A, S_A, S_B}, 5},
    /* 1 seen, 5 excluded, 3 blocked, 7 rejected by the predicate. */
    {"exclusions", RK_MERGE_INTERLEAVE, {2, 2, 2}, {0}, 10, {1}, {5}, {3},
     {7}, 1, 1, 1, 1, {2, 6, 8, 4}, {S_A, S_B, S_C, S_A}, 4},
    /* Score mode: A normalized 1, .67, .33, 0; B x 0.5: 2 -> .5, 5 -> .375,
     * 6 -> 0; C all equal -> 1. Taken in order 1, 7, 2, 5, 6 under quotas
     * A2 B2 C1, output sorted by best score. */
    {"score", RK_MERGE_SCORE, {2, 2, 1}, {1, 0.5f, 1}, 5, {0}, {0}, {0}, {0},
     0, 0, 0, 0, {1, 7, 2, 5, 6}, {S_A, S_C, S_A, S_B, S_B}, 5},
    {"score_exclusions", RK_MERGE_SCORE, {9, 9, 9}, {1, 1, 1}, 10, {1, 2},
     {8}, {0}, {4}, 2, 1, 0, 1, {7, 5, 3, 6}, {S_C, S_B, S_A, S_B}, 4},
};

TEST(merge_table)
{
    for (size_t t = 0; t < sizeof merge_cases / sizeof *merge_cases; t++) {
        const merge_case *tc = &merge_cases[t];
        rk_merge_input in[3] = {
            {LA, 4, tc->quota[0], tc->weight[0]},
            {LB, 3, tc->quota[1], tc->weight[1]},
            {LC, 2, tc->quota[2], tc->weight[2]},
        };
        uint64_t bits[1] = {0};
        for (size_t k = 0; k < tc->nblocked; k++) bits[0] |= 1u << tc->blocked[k];
        reject_list rj = {tc->reject, tc->nreject};
        rk_merge_opts o = {.n = tc->n, .mode = tc->mode, .seen = tc->seen,
                           .nseen = tc->nseen, .exclude = tc->exclude,
                           .nexclude = tc->nexclude, .blocked = bits,
                           .nblocked = 64, .keep = reject_keep, .keep_arg = &rj};
        rk_candidate out[10];
        size_t n;
        rk_merge_stats st;
        rk_err err = {0};
        CHECK_OK(rk_merge(in, 3, &o, out, &n, &st, &err));
        int ok = n == tc->nout;
        for (size_t k = 0; ok && k < n; k++)
            ok = out[k].item == tc->items[k] && out[k].source == tc->sources[k];
        if (!ok) {
            fprintf(stderr, "  %s: got", tc->name);
            for (size_t k = 0; k < n; k++)
                fprintf(stderr, " %u/%s", out[k].item, rk_source_name(out[k].source));
            fprintf(stderr, "\n");
        }
        CHECK(ok);
        if (!strcmp(tc->name, "interleave")) {
            /* Item 2: listed by A and B, taken by B, best score B's 1.0. */
            CHECK_EQ_INT(out[1].sources, (1u << S_A) | (1u << S_B));
            CHECK_NEAR(out[1].score, 1.0);
            CHECK_NEAR(out[0].score, 1.0);
            CHECK_NEAR(out[3].score, (0.7 - 0.6) / 0.3);
            CHECK_EQ_INT(st.duplicate, 1);
        }
        if (!strcmp(tc->name, "exclusions")) {
            CHECK_EQ_INT(st.considered, 9);
            CHECK_EQ_INT(st.seen, 1);
            CHECK_EQ_INT(st.excluded, 1);
            CHECK_EQ_INT(st.blocked, 1);
            CHECK_EQ_INT(st.rejected, 1);
            CHECK_EQ_INT(st.duplicate, 1);
            CHECK_EQ_INT(st.taken[S_A], 2);
            CHECK_EQ_INT(st.taken[S_B], 1);
            CHECK_EQ_INT(st.taken[S_C], 1);
        }
        if (!strcmp(tc->name, "score")) {
            CHECK_NEAR(out[2].score, (0.8 - 0.6) / 0.3);
            CHECK_NEAR(out[3].score, 0.375);
            CHECK_NEAR(out[4].score, 0);
        }
    }
}

TEST(merge_edges)
{
    rk_err err = {0};
    rk_candidate out[4];
    size_t n = 99;
    rk_merge_opts o = {.n = 4};
    /* No inputs, n = 0, all quotas 0: nothing, no error. */
    CHECK_OK(rk_merge(NULL, 0, &o, out, &n, NULL, &err));
    CHECK_EQ_INT(n, 0);
    rk_merge_input in = {LA, 4, 0, 0};
    CHECK_OK(rk_merge(&in, 1, &o, out, &n, NULL, &err));
    CHECK_EQ_INT(n, 0);
    in.quota = 10;
    o.n = 0;
    CHECK_OK(rk_merge(&in, 1, &o, out, &n, NULL, &err));
    CHECK_EQ_INT(n, 0);
    /* A list given as NULL with n > 0, and an unknown mode, are errors. */
    o.n = 4;
    rk_merge_input bad = {NULL, 3, 1, 0};
    CHECK_EQ_INT(rk_merge(&bad, 1, &o, out, &n, NULL, &err), RK_EINVAL);
    o.mode = (rk_merge_mode)7;
    CHECK_EQ_INT(rk_merge(&in, 1, &o, out, &n, NULL, &err), RK_EINVAL);
    /* Every candidate seen: empty output. */
    o.mode = RK_MERGE_SCORE;
    uint32_t seen[] = {4, 3, 2, 1};
    o.seen = seen;
    o.nseen = 4;
    CHECK_OK(rk_merge(&in, 1, &o, out, &n, NULL, &err));
    CHECK_EQ_INT(n, 0);
}

/* Item records for the filter table: attrs category (0), tags (1),
 * price (2), published (3). */
TEST(merge_filters)
{
    static const char *const tags[] = {"europe", "politics"};
    static const uint32_t tag_lens[] = {6, 8};
    rk_attr_val av[4] = {
        {.attr = 0, .type = RK_ATTR_CATEGORICAL, .str = "news", .len = 4},
        {.attr = 1, .type = RK_ATTR_CATEGORICAL_LIST, .list = tags,
         .list_lens = tag_lens, .n = 2},
        {.attr = 2, .type = RK_ATTR_NUMERIC, .num = 9.5},
        {.attr = 3, .type = RK_ATTR_TIMESTAMP, .ts_ms = T0},
    };
    rk_entity_view full = {.id = 1, .nattrs = 4, .attrs = av};
    rk_entity_view bare = {.id = 2, .nattrs = 0, .attrs = NULL};
    static const char *const news_sport[] = {"sport", "news"};
    static const char *const sport[] = {"sport"};
    static const char *const europe[] = {"asia", "europe"};
    static const struct {
        const char *name;
        rk_filter_clause cl[2];
        size_t n;
        int full, bare;
    } cases[] = {
        {"empty", {{0}}, 0, 1, 1},
        {"category_in", {{0, RK_FILTER_IN, news_sport, NULL, 2, 0, 0}}, 1, 1, 0},
        {"category_not_in_set", {{0, RK_FILTER_IN, sport, NULL, 1, 0, 0}}, 1, 0, 0},
        {"category_not_in", {{0, RK_FILTER_NOT_IN, sport, NULL, 1, 0, 0}}, 1, 1, 1},
        {"tag_any", {{1, RK_FILTER_IN, europe, NULL, 2, 0, 0}}, 1, 1, 0},
        {"tag_not_in", {{1, RK_FILTER_NOT_IN, europe, NULL, 2, 0, 0}}, 1, 0, 1},
        {"price_range", {{2, RK_FILTER_RANGE, NULL, NULL, 0, 9, 10}}, 1, 1, 0},
        {"price_inclusive", {{2, RK_FILTER_RANGE, NULL, NULL, 0, 9.5, 9.5}}, 1, 1, 0},
        {"price_out", {{2, RK_FILTER_RANGE, NULL, NULL, 0, 10, INFINITY}}, 1, 0, 0},
        {"published_after", {{3, RK_FILTER_RANGE, NULL, NULL, 0, (double)T0, INFINITY}}, 1, 1, 0},
        {"and", {{0, RK_FILTER_IN, news_sport, NULL, 2, 0, 0},
                 {2, RK_FILTER_RANGE, NULL, NULL, 0, -INFINITY, 5}}, 2, 0, 0},
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        rk_filter f = {cases[t].cl, cases[t].n};
        int a = rk_merge_filter_match(&f, &full), b = rk_merge_filter_match(&f, &bare);
        if (a != cases[t].full || b != cases[t].bare)
            fprintf(stderr, "  %s: full %d bare %d\n", cases[t].name, a, b);
        CHECK_EQ_INT(a, cases[t].full);
        CHECK_EQ_INT(b, cases[t].bare);
    }
    CHECK_EQ_INT(rk_merge_filter_match(NULL, &bare), 1);

    /* Checks against a schema: wrong attribute types and bad ranges. */
    rk_schema *sc;
    CHECK_OK(rk_schema_create(&sc));
    rk_err err = {0};
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "category", RK_ATTR_CATEGORICAL, 0, &err);
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "tags", RK_ATTR_CATEGORICAL_LIST, 0, &err);
    rk_schema_add_attr(sc, RK_ENTITY_ITEM, "price", RK_ATTR_NUMERIC, 0, &err);
    static const struct {
        rk_filter_clause cl;
        int code;
        const char *msg;
    } checks[] = {
        {{0, RK_FILTER_IN, sport, NULL, 1, 0, 0}, 0, NULL},
        {{2, RK_FILTER_RANGE, NULL, NULL, 0, 1, 2}, 0, NULL},
        {{2, RK_FILTER_IN, sport, NULL, 1, 0, 0}, RK_EINVAL, "'price': 'in' needs"},
        {{0, RK_FILTER_RANGE, NULL, NULL, 0, 1, 2}, RK_EINVAL, "'range' needs"},
        {{2, RK_FILTER_RANGE, NULL, NULL, 0, 3, 2}, RK_EINVAL, "empty"},
        {{9, RK_FILTER_IN, sport, NULL, 1, 0, 0}, RK_EINVAL, "no item attribute"},
    };
    int ok = 1;
    for (size_t t = 0; t < sizeof checks / sizeof *checks; t++) {
        rk_filter f = {&checks[t].cl, 1};
        rk_err_clear(&err);
        int rc = rk_merge_filter_check(&f, sc, &err);
        if (rc != checks[t].code || (checks[t].msg && !strstr(err.msg, checks[t].msg))) {
            fprintf(stderr, "  check %zu: %s %s\n", t, rk_errname(rc), err.msg);
            ok = 0;
        }
    }
    rk_schema_destroy(sc);
    CHECK(ok);
}

TEST(merge_with_store_predicate_and_bitset)
{
    const char *dir = rk_test_tmpdir("gen-merge-store");
    rk_err err = {0};
    rk_store *s = open_store(dir, &err);
    CHECK(s);
    int rc = fill_store(s, &err);
    if (rc) rk_store_close(s);
    CHECK_OK(rc);
    uint32_t id[7];
    for (int k = 0; k < 7; k++) {
        char ext[4];
        snprintf(ext, sizeof ext, "i%d", k);
        id[k] = item_id(s, ext);
    }
    rk_reader *r;
    CHECK_OK(rk_store_reader(s, &r, &err));
    uint64_t *bits = NULL;
    uint32_t nbits = 0;
    rc = rk_merge_blocked_from_reader(r, &bits, &nbits, &err);
    /* Candidates: every item by descending id, from one source. */
    rk_candidate cands[8];
    for (int k = 0; k < 7; k++)
        cands[k] = (rk_candidate){id[6 - k], (float)(7 - k), RK_SRC_ANN, 0, 0};
    cands[7] = (rk_candidate){999, 0.5f, RK_SRC_ANN, 0, 0}; /* no record */
    rk_merge_input in = {cands, 8, 100, 1};
    static const char *const news[] = {"news"};
    rk_filter_clause cl = {0, RK_FILTER_IN, news, NULL, 1, 0, 0};
    uint32_t cat;
    rk_schema_find_attr(rk_store_schema(s), RK_ENTITY_ITEM, "category", 8, &cat);
    cl.attr = cat;
    rk_filter f = {&cl, 1};
    rk_merge_reader_ctx ctx = {r, &f};
    rk_merge_opts o = {.n = 10, .mode = RK_MERGE_INTERLEAVE,
                       .keep = rk_merge_reader_keep, .keep_arg = &ctx};
    rk_candidate out[10];
    size_t n = 0, n2 = 0, n3 = 0;
    rk_candidate out2[10], out3[10];
    if (rc == 0) rc = rk_merge(&in, 1, &o, out, &n, NULL, &err);
    /* Without a filter the predicate still drops hidden and deleted. */
    ctx.filter = NULL;
    if (rc == 0) rc = rk_merge(&in, 1, &o, out2, &n2, NULL, &err);
    /* The bitset alone does the same for hidden/deleted. */
    o.keep = NULL;
    o.blocked = bits;
    o.nblocked = nbits;
    if (rc == 0) rc = rk_merge(&in, 1, &o, out3, &n3, NULL, &err);
    rk_reader_close(r);
    rk_store_close(s);
    rk_free(bits);
    CHECK_OK(rc);
    CHECK_EQ_INT(nbits, 7);
    /* News, visible: i5, i1, i0 (i3 hidden, i4 deleted). */
    CHECK_EQ_INT(n, 3);
    CHECK(out[0].item == id[5] && out[1].item == id[1] && out[2].item == id[0]);
    CHECK_EQ_INT(n2, 6); /* 6, 5, 2, 1, 0 and the record-less 999 */
    CHECK_EQ_INT(n3, 6);
    for (size_t k = 0; k < n2; k++) CHECK(out2[k].item == out3[k].item);
    rk_test_rmdir(dir);
}

/* ======================================================================== */
/* Small pieces                                                              */
/* ======================================================================== */

TEST(seeds_and_source_names)
{
    /* Events: 5 at +10 h, 7 at +9 h (w 3), 5 again at +1 h, 9 at +8 h. */
    const uint32_t items[] = {5, 7, 5, 9};
    const int64_t ts[] = {T0 + 10 * H, T0 + 9 * H, T0 + 1 * H, T0 + 8 * H};
    const float w[] = {1, 3, 1, 1};
    rk_seed s[4];
    size_t n;
    CHECK_OK(rk_seeds_from_events(items, ts, w, 4, T0 + 10 * H, 1.0 * H, s, 4, &n));
    CHECK_EQ_INT(n, 3);
    CHECK(s[0].item == 5 && s[1].item == 7 && s[2].item == 9);
    CHECK_NEAR(s[0].weight, 1);
    CHECK_NEAR(s[1].weight, 1.5);
    CHECK_NEAR(s[2].weight, 0.25);
    CHECK_OK(rk_seeds_from_events(items, ts, NULL, 4, T0, 0, s, 2, &n));
    CHECK_EQ_INT(n, 2);
    CHECK(s[0].item == 5 && s[1].item == 7 && s[1].weight == 1);

    for (unsigned k = 1; k < RK_SRC_COUNT; k++) {
        rk_source src;
        const char *name = rk_source_name(k);
        CHECK_OK(rk_source_parse(name, strlen(name), &src));
        CHECK_EQ_INT(src, k);
    }
    CHECK_STR(rk_source_name(RK_SRC_COVIS), "covis");
    CHECK_STR(rk_source_name(200), "unknown");
    rk_source src;
    CHECK_EQ_INT(rk_source_parse("covisx", 6, &src), RK_ENOTFOUND);
}

/* Built models are read-only: threads querying one at once all get the
 * answer a single thread gets. */
typedef struct qthread {
    const rk_covis *cv;
    const rk_content *ct;
    const rk_candidate *want_cv, *want_ct;
    size_t nwant_cv, nwant_ct;
    int ok;
} qthread;

static void *query_loop(void *arg)
{
    qthread *q = arg;
    rk_seed seeds[] = {{3, 1}, {17, 0.5f}, {29, 2}};
    rk_candidate out[16];
    size_t n;
    q->ok = 1;
    for (int k = 0; k < 300 && q->ok; k++) {
        if (rk_covis_query(q->cv, seeds, 3, 16, out, &n) || n != q->nwant_cv ||
            memcmp(out, q->want_cv, n * sizeof *out))
            q->ok = 0;
        if (rk_content_query(q->ct, seeds, 3, 16, out, &n) || n != q->nwant_ct ||
            memcmp(out, q->want_ct, n * sizeof *out))
            q->ok = 0;
    }
    return NULL;
}

TEST(queries_concurrent)
{
    enum { NU = 50, NI = 40, NE = 1000, NT = 4 };
    static uint32_t users[NE], items[NE];
    static int64_t ts[NE];
    uint64_t x = 777;
    rk_err err = {0};
    rk_content_builder *b;
    CHECK_OK(rk_content_builder_create(&b, NI, NULL, &err));
    for (int k = 0; k < NE; k++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        users[k] = (uint32_t)(x >> 33) % NU;
        items[k] = (uint32_t)(x >> 40) % NI;
        ts[k] = T0 + (int64_t)((x >> 20) % (48 * H));
        char tok[16];
        snprintf(tok, sizeof tok, "g=%u", (unsigned)((x >> 8) % 7));
        CHECK_OK(rk_content_builder_add(b, items[k], tok, strlen(tok), 1, &err));
    }
    rk_content *ct;
    rk_covis *cv;
    CHECK_OK(rk_content_builder_finish(b, &ct, &err));
    int rc = rk_covis_build_from_events(&cv, NU, NI, users, items, ts, NULL, NE,
                                        NULL, &err);
    if (rc) rk_content_destroy(ct);
    CHECK_OK(rc);
    rk_seed seeds[] = {{3, 1}, {17, 0.5f}, {29, 2}};
    rk_candidate want_cv[16], want_ct[16];
    qthread q[NT] = {{0}};
    size_t ncv = 0, nct = 0;
    rc = rk_covis_query(cv, seeds, 3, 16, want_cv, &ncv);
    if (rc == 0) rc = rk_content_query(ct, seeds, 3, 16, want_ct, &nct);
    pthread_t th[NT];
    for (int t = 0; rc == 0 && t < NT; t++) {
        q[t] = (qthread){cv, ct, want_cv, want_ct, ncv, nct, 0};
        pthread_create(&th[t], NULL, query_loop, &q[t]);
    }
    int ok = rc == 0 && ncv == 16 && nct == 16;
    for (int t = 0; rc == 0 && t < NT; t++) {
        pthread_join(th[t], NULL);
        ok = ok && q[t].ok;
    }
    rk_covis_destroy(cv);
    rk_content_destroy(ct);
    CHECK_OK(rc);
    CHECK(ok);
}

/* ======================================================================== */
/* Allocation failures                                                       */
/* ======================================================================== */

/* Each builds, queries and frees one object; returns the first error. */
static int oom_covis(void)
{
    rk_covis_opts o;
    case_opts(&covis_cases[1], &o);
    o.max_buffer_pairs = 2; /* exercise the multi-pass path too */
    rk_err err = {0};
    rk_covis *c;
    int rc = build_case(&covis_cases[1], &o, &c, &err);
    if (rc) return rc;
    rk_seed s[] = {{A, 1}};
    rk_candidate out[4];
    size_t n;
    rc = rk_covis_query(c, s, 1, 4, out, &n);
    rk_covis_destroy(c);
    return rc;
}

static int oom_covis_matrix(void)
{
    const uint32_t u[] = {0, 0, 1, 1}, i[] = {0, 1, 1, 2};
    const float w[] = {1, 1, 1, 1};
    const int64_t ts[] = {0, 1, 2, 3};
    rk_err err = {0};
    rk_interactions *m;
    int rc = rk_interactions_from_triplets(&m, 2, 3, u, i, w, ts, 4, &err);
    if (rc) return rc;
    rk_covis *c;
    rc = rk_covis_build(&c, m, NULL, &err);
    rk_interactions_free(m);
    if (rc == 0) rk_covis_destroy(c);
    return rc;
}

static int oom_popular(void)
{
    const uint32_t items[] = {0, 1, 1};
    const int64_t ts[] = {T0, T0 + H, T0 + 2 * H};
    rk_err err = {0};
    rk_popular *p;
    int rc = rk_popular_build(&p, 2, items, ts, NULL, 3, NULL, &err);
    if (rc == 0) rk_popular_destroy(p);
    return rc;
}

static int oom_fresh(void)
{
    const int64_t ts[] = {T0, T0 + H, INT64_MIN};
    rk_err err = {0};
    rk_fresh *f;
    int rc = rk_fresh_build(&f, 3, ts, NULL, NULL, &err);
    if (rc == 0) rk_fresh_destroy(f);
    return rc;
}

static int oom_content(void)
{
    static const char *const toks[] = {"0 t=a", "0 t=r", "1 t=a", "2 t=r", "3 t=a"};
    rk_content *c;
    int rc = build_tokens(&c, 4, toks, 5, NULL);
    if (rc) return rc;
    rk_seed s[] = {{0, 1}};
    rk_candidate out[4];
    size_t n;
    rc = rk_content_query(c, s, 1, 4, out, &n);
    rk_content_destroy(c);
    return rc;
}

static int oom_merge(void)
{
    rk_merge_input in[3] = {{LA, 4, 2, 1}, {LB, 3, 2, 1}, {LC, 2, 2, 1}};
    uint32_t seen[] = {1};
    rk_candidate out[8];
    size_t n;
    rk_err err = {0};
    for (int mode = 0; mode < 2; mode++) {
        rk_merge_opts o = {.n = 8, .mode = (rk_merge_mode)mode, .seen = seen,
                           .nseen = 1};
        int rc = rk_merge(in, 3, &o, out, &n, NULL, &err);
        if (rc) return rc;
    }
    return 0;
}

static int oom_seeds(void)
{
    const uint32_t items[] = {1, 2};
    const int64_t ts[] = {1, 2};
    rk_seed s[2];
    size_t n;
    return rk_seeds_from_events(items, ts, NULL, 2, 2, 1, s, 2, &n);
}

TEST(allocation_failures)
{
    static const struct {
        const char *name;
        int (*fn)(void);
    } cases[] = {
        {"covis", oom_covis},     {"covis_matrix", oom_covis_matrix},
        {"popular", oom_popular}, {"fresh", oom_fresh},
        {"content", oom_content}, {"merge", oom_merge},
        {"seeds", oom_seeds},
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        int done = 0;
        uint64_t n;
        for (n = 1; n < 10000 && !done; n++) {
            rk_mem_stats before, after;
            rk_mem_get_stats(&before);
            rk_mem_fail_at(n, 0);
            int rc = cases[t].fn();
            rk_mem_fail_at(0, 0);
            rk_mem_get_stats(&after);
            if (rc == 0) done = 1;
            else if (rc != RK_ENOMEM) {
                fprintf(stderr, "  %s: failing allocation %llu gave %s\n",
                        cases[t].name, (unsigned long long)n, rk_errname(rc));
                CHECK(0);
            }
            if (after.in_use != before.in_use) {
                fprintf(stderr, "  %s: failing allocation %llu leaked %zu bytes\n",
                        cases[t].name, (unsigned long long)n,
                        after.in_use - before.in_use);
                CHECK(0);
            }
        }
        CHECK(done);
        CHECK(n > 2); /* at least one injected failure was exercised */
    }
}

static int oom_store_builds(rk_store *s)
{
    rk_err err = {0};
    rk_covis *c;
    rk_popular *p;
    rk_fresh *f;
    rk_content *ct;
    int rc = rk_covis_build_from_store(&c, s, NULL, NULL, &err);
    if (rc) return rc;
    rk_covis_destroy(c);
    if ((rc = rk_popular_build_from_store(&p, s, NULL, NULL, &err))) return rc;
    rk_popular_destroy(p);
    if ((rc = rk_fresh_build_from_store(&f, s, NULL, &err))) return rc;
    rk_fresh_destroy(f);
    if ((rc = rk_content_build_from_store(&ct, s, NULL, &err))) return rc;
    rk_content_destroy(ct);
    rk_reader *r;
    if ((rc = rk_store_reader(s, &r, &err))) return rc;
    uint64_t *bits;
    uint32_t nbits;
    rc = rk_merge_blocked_from_reader(r, &bits, &nbits, &err);
    rk_reader_close(r);
    if (rc == 0) rk_free(bits);
    return rc;
}

TEST(allocation_failures_from_store)
{
    const char *dir = rk_test_tmpdir("gen-oom-store");
    rk_err err = {0};
    rk_store *s = open_store(dir, &err);
    CHECK(s);
    int rc = fill_store(s, &err);
    if (rc) rk_store_close(s);
    CHECK_OK(rc);
    int done = 0, bad = 0;
    for (uint64_t n = 1; n < 20000 && !done && !bad; n++) {
        rk_mem_stats before, after;
        rk_mem_get_stats(&before);
        rk_mem_fail_at(n, 0);
        rc = oom_store_builds(s);
        rk_mem_fail_at(0, 0);
        rk_mem_get_stats(&after);
        if (rc == 0) done = 1;
        else if (rc != RK_ENOMEM) bad = 1;
        if (after.in_use != before.in_use) bad = 2;
        if (bad)
            fprintf(stderr, "  n=%llu: %s, %zd bytes\n", (unsigned long long)n,
                    rk_errname(rc), (ssize_t)(after.in_use - before.in_use));
    }
    rk_store_close(s);
    CHECK(done && !bad);
    rk_test_rmdir(dir);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, covis_hand_computed, covis_bounded_buffer_same_result,
                 covis_query_aggregates_and_excludes_seeds,
                 covis_save_load_and_corruption, covis_opts_from_conf,
                 covis_from_store, trending_decay_hand_computed,
                 popular_all_time_order, popular_from_store_and_matrix,
                 fresh_order_and_exclusions, fresh_from_store,
                 content_tfidf_hand_computed, content_caps_and_options,
                 content_from_store_tags_text_cold_items, content_text_tokenizer,
                 content_threads_same_result, merge_table, merge_edges,
                 merge_filters, merge_with_store_predicate_and_bitset,
                 seeds_and_source_names, queries_concurrent, allocation_failures,
                 allocation_failures_from_store);
}
