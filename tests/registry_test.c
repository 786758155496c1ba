/*
 * registry_test.c — model artifacts, reference histograms, meta.json and
 * the registry: round trips; every kind of damage refused with a message
 * naming it (a flipped byte anywhere, truncation at every length, another
 * format version); promote, rollback and retention; the promotion gate
 * table; publishing through the gate; SIGKILL of a writer at random
 * points, many times, after which the previous version must still be
 * served and nothing half-written may sit under a final name; and
 * allocation failures at every step.
 *
 * Two cases write files for other tests when asked through the
 * environment: cli_fixture fills $RK_MODELS_FIXTURE (a models directory)
 * for tests/models_cli_test.sh, and fuzz_seeds writes the seeds of
 * fuzz/corpus/artifact/ into $RK_ARTIFACT_WRITE_CORPUS.
 */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rk_train.h"
#include "test.h"

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) < 1e-12)

static int read_all(const char *path, unsigned char **buf, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc(sz > 0 ? (size_t)sz : 1);
    *n = *buf ? fread(*buf, 1, (size_t)sz, f) : 0;
    fclose(f);
    return *buf && *n == (size_t)sz ? 0 : -1;
}

static int write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static int exists(const char *fmt, const char *a, const char *b)
{
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, fmt, a, b);
    return lstat(p, &st) == 0;
}

static uint32_t link_of(const char *models, const char *name, const char *link)
{
    char p[1024], t[64];
    snprintf(p, sizeof p, "%s/%s/%s", models, name, link);
    ssize_t n = readlink(p, t, sizeof t - 1);
    if (n <= 0) return 0;
    t[n] = '\0';
    return (uint32_t)atoi(t);
}

/* ---- artifacts ------------------------------------------------------------------ */

TEST(artifact_round_trip)
{
    const char *dir = rk_test_tmpdir("art-rt");
    rk_err err = {0};
    static unsigned char payload[5000];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (unsigned char)(i * 7);
    CHECK_OK(rk_artifact_write(dir, "model.rk", RK_MODEL_GBDT, payload,
                               sizeof payload, &err));
    char path[600];
    snprintf(path, sizeof path, "%s/model.rk", dir);
    rk_artifact a;
    CHECK_OK(rk_artifact_read(path, &a, &err));
    CHECK_EQ_INT(a.version, RK_ARTIFACT_VERSION);
    CHECK_EQ_INT(a.kind, RK_MODEL_GBDT);
    CHECK_EQ_INT(a.len, sizeof payload);
    CHECK(memcmp(a.payload, payload, sizeof payload) == 0);
    uint64_t sum = a.checksum;
    rk_artifact_free(&a);
    CHECK(a.payload == NULL && a.mem == NULL);

    /* The file is exactly the encoded image. */
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk_artifact_encode(RK_MODEL_GBDT, payload, sizeof payload, &b));
    unsigned char *file;
    size_t n;
    CHECK(read_all(path, &file, &n) == 0);
    CHECK(n == b.len && memcmp(file, b.data, n) == 0);
    CHECK(memcmp(file, "RKMODEL\0", 8) == 0);
    CHECK_EQ_INT(n, RK_ARTIFACT_HEADER + sizeof payload + RK_ARTIFACT_TRAILER);
    free(file);
    rk_artifact m;
    CHECK_OK(rk_artifact_parse(b.data, b.len, "mem", &m, &err));
    CHECK(m.mem == NULL && m.checksum == sum &&
          m.payload == (const void *)(b.data + RK_ARTIFACT_HEADER));
    rk_buf_free(&b);

    /* Empty payloads and kinds this build does not know are fine. */
    CHECK_OK(rk_artifact_write(dir, "empty.rk", (rk_model_kind)77, NULL, 0, &err));
    snprintf(path, sizeof path, "%s/empty.rk", dir);
    CHECK_OK(rk_artifact_read(path, &a, &err));
    CHECK(a.len == 0 && a.kind == 77);
    CHECK_STR(rk_model_kind_name(a.kind), "unknown");
    rk_artifact_free(&a);

    /* Names and kinds. */
    rk_model_kind k;
    CHECK_OK(rk_model_kind_parse("ftrl", &k, &err));
    CHECK(k == RK_MODEL_FTRL);
    CHECK_STR(rk_model_kind_name(RK_MODEL_CALIBRATION), "calibration");
    CHECK(rk_model_kind_parse("svm", &k, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "gbdt");
    CHECK(rk_artifact_write(dir, "../x", RK_MODEL_FM, payload, 1, &err) ==
          RK_EINVAL);
    CHECK(rk_artifact_write(dir, ".hidden", RK_MODEL_FM, payload, 1, &err) ==
          RK_EINVAL);
    /* No temporary file is left behind. */
    DIR *d = opendir(dir);
    struct dirent *de;
    int others = 0;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] == '.' && strcmp(de->d_name, ".") &&
            strcmp(de->d_name, "..")) others++;
    closedir(d);
    CHECK_EQ_INT(others, 0);
    CHECK(rk_artifact_read("/nonexistent/model.rk", &a, &err) == RK_ENOTFOUND);
    rk_test_rmdir(dir);
}

/* Every single flipped byte is refused, and the message names the path
 * and the kind of damage the byte's place implies. */
TEST(artifact_every_flipped_byte)
{
    const char *dir = rk_test_tmpdir("art-flip");
    rk_err err = {0};
    unsigned char payload[40];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (unsigned char)i;
    CHECK_OK(rk_artifact_write(dir, "m.rk", RK_MODEL_FTRL, payload,
                               sizeof payload, &err));
    char path[600];
    snprintf(path, sizeof path, "%s/m.rk", dir);
    unsigned char *img;
    size_t n;
    CHECK(read_all(path, &img, &n) == 0);
    for (size_t at = 0; at < n; at++) {
        img[at] ^= 0x20;
        CHECK(write_all(path, img, n) == 0);
        img[at] ^= 0x20;
        rk_artifact a;
        int rc = rk_artifact_read(path, &a, &err);
        const char *want = at < 8 ? "bad magic"
                         : at < 12 ? "format version"
                         : at < 16 ? "checksum mismatch"   /* the kind */
                         : at < 24 ? (at == 16 ? "trailing bytes" : "truncated")
                                   : "checksum mismatch";
        if (rc == 0 || !strstr(err.msg, want) || !strstr(err.msg, path))
            fprintf(stderr, "  byte %zu: %s: %s\n", at, rk_errname(rc), err.msg);
        CHECK(rc == (at >= 8 && at < 12 ? RK_EVERSION : RK_ECORRUPT));
        CHECK_CONTAINS(err.msg, want);
        CHECK_CONTAINS(err.msg, path);
        CHECK(a.payload == NULL);
    }
    free(img);
    rk_test_rmdir(dir);
}

TEST(artifact_truncated_and_trailing)
{
    const char *dir = rk_test_tmpdir("art-trunc");
    rk_err err = {0};
    unsigned char payload[100] = {1, 2, 3};
    CHECK_OK(rk_artifact_write(dir, "m.rk", RK_MODEL_FM, payload,
                               sizeof payload, &err));
    char path[600], want[64];
    snprintf(path, sizeof path, "%s/m.rk", dir);
    unsigned char *img;
    size_t n;
    CHECK(read_all(path, &img, &n) == 0);
    CHECK_EQ_INT(n, 132);
    for (size_t len = 0; len < n; len++) {
        CHECK(write_all(path, img, len) == 0);
        rk_artifact a;
        CHECK(rk_artifact_read(path, &a, &err) == RK_ECORRUPT);
        if (len >= RK_ARTIFACT_HEADER)
            snprintf(want, sizeof want, "truncated: %zu of 132 bytes", len);
        else
            snprintf(want, sizeof want, "truncated: %zu of at least 32", len);
        CHECK_CONTAINS(err.msg, want);
        CHECK_CONTAINS(err.msg, path);
        /* The same from memory. */
        CHECK(rk_artifact_parse(img, len, "img", &a, &err) == RK_ECORRUPT);
        CHECK_CONTAINS(err.msg, "img: truncated");
    }
    unsigned char *longer = malloc(n + 3);
    memcpy(longer, img, n);
    memset(longer + n, 0, 3);
    CHECK(write_all(path, longer, n + 3) == 0);
    rk_artifact a;
    CHECK(rk_artifact_read(path, &a, &err) == RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "3 trailing bytes");
    free(longer);
    free(img);
    rk_test_rmdir(dir);
}

TEST(artifact_wrong_version)
{
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk_artifact_encode(RK_MODEL_EASE, "abc", 3, &b));
    /* Version 2 with a valid checksum: refused for the version itself. */
    b.data[8] = 2;
    uint64_t sum = rk_hash64(b.data, b.len - 8, 0);
    for (int i = 0; i < 8; i++) b.data[b.len - 8 + i] = (char)(sum >> (8 * i));
    rk_artifact a;
    rk_err err = {0};
    CHECK(rk_artifact_parse(b.data, b.len, "v2.rk", &a, &err) == RK_EVERSION);
    CHECK_CONTAINS(err.msg, "v2.rk: artifact format version 2");
    b.data[8] = 1;
    sum = rk_hash64(b.data, b.len - 8, 0);
    for (int i = 0; i < 8; i++) b.data[b.len - 8 + i] = (char)(sum >> (8 * i));
    CHECK_OK(rk_artifact_parse(b.data, b.len, "v1.rk", &a, &err));
    CHECK(a.len == 3 && memcmp(a.payload, "abc", 3) == 0);
    /* A length field claiming the whole address space. */
    memset(b.data + 16, 0xff, 8);
    CHECK(rk_artifact_parse(b.data, b.len, "big.rk", &a, &err) == RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "big.rk");
    rk_buf_free(&b);
}

/* ---- reference histograms ---------------------------------------------------------- */

static int json_round_trip(const rk_refhist *h, rk_refhist **back)
{
    rk_buf b;
    rk_buf_init(&b, 0);
    rk_err err = {0};
    int rc = rk_refhist_json(h, &b);
    if (!rc) rc = rk_refhist_parse(back, b.data, b.len, &err);
    if (rc) fprintf(stderr, "  round trip: %s\n", err.msg);
    rk_buf_free(&b);
    return rc;
}

TEST(refhist_numeric)
{
    /* 1..100 in 10 quantile bins: cuts at 11, 21, ..., 91, 10 per bin;
     * two missing values (NaN and an infinity). Stride 2: the other
     * column holds garbage that must not be read. */
    float x[2 * 102];
    for (int i = 0; i < 100; i++) {
        x[2 * i] = (float)(100 - i);
        x[2 * i + 1] = -1e30f;
    }
    x[200] = NAN;
    x[202] = INFINITY;
    rk_refhist *h;
    rk_err err = {0};
    CHECK_OK(rk_refhist_numeric(&h, "age", x, 102, 2, 10, &err));
    CHECK_EQ_INT(h->count, 100);
    CHECK_EQ_INT(h->missing, 2);
    CHECK_EQ_INT(h->nbins, 10);
    for (uint32_t i = 0; i < 9; i++) CHECK(h->edges[i] == 11 + 10 * i);
    for (uint32_t i = 0; i < 10; i++) CHECK_EQ_INT(h->counts[i], 10);
    CHECK(h->min == 1 && h->max == 100 && NEAR(h->mean, 50.5));
    CHECK(NEAR(h->std, sqrt((100.0 * 100 - 1) / 12)));
    /* Binning: open outer bins, left-closed intervals. */
    CHECK_EQ_INT(rk_refhist_bin(h, -5), 0);
    CHECK_EQ_INT(rk_refhist_bin(h, 10.99), 0);
    CHECK_EQ_INT(rk_refhist_bin(h, 11), 1);
    CHECK_EQ_INT(rk_refhist_bin(h, 91), 9);
    CHECK_EQ_INT(rk_refhist_bin(h, 1e9), 9);
    CHECK_EQ_INT(rk_refhist_bin(h, NAN), UINT32_MAX);
    rk_refhist *back;
    CHECK_OK(json_round_trip(h, &back));
    CHECK_STR(back->name, "age");
    CHECK(back->kind == RK_REFHIST_NUMERIC && back->nbins == 10 &&
          back->count == 100 && back->missing == 2 && back->mean == h->mean &&
          back->std == h->std);
    for (uint32_t i = 0; i < 9; i++) CHECK(back->edges[i] == h->edges[i]);
    rk_refhist_free(back);
    rk_refhist_free(h);

    /* A binary feature: two bins whatever was asked; a constant one: one
     * bin; all missing: count 0 and NaN statistics, still round trips. */
    float bin[10] = {0, 1, 0, 0, 1, 0, 0, 0, 1, 0};
    CHECK_OK(rk_refhist_numeric(&h, "clicked", bin, 10, 1, 20, &err));
    CHECK(h->nbins == 2 && h->edges[0] == 1 && h->counts[0] == 7 &&
          h->counts[1] == 3);
    rk_refhist_free(h);
    float c[3] = {0.1f, 0.1f, 0.1f};
    CHECK_OK(rk_refhist_numeric(&h, "const", c, 3, 0, 0, &err));
    CHECK(h->nbins == 1 && h->counts[0] == 3 && h->mean == h->min && h->std == 0);
    CHECK_OK(json_round_trip(h, &back));
    rk_refhist_free(back);
    rk_refhist_free(h);
    float nan3[3] = {NAN, NAN, NAN};
    CHECK_OK(rk_refhist_numeric(&h, "gone", nan3, 3, 1, 5, &err));
    CHECK(h->count == 0 && h->missing == 3 && h->nbins == 1 && isnan(h->mean));
    CHECK_OK(json_round_trip(h, &back));
    CHECK(back->count == 0 && isnan(back->min));
    rk_refhist_free(back);
    rk_refhist_free(h);
    CHECK(rk_refhist_numeric(&h, "", c, 3, 1, 5, &err) == RK_EINVAL);
    CHECK(rk_refhist_numeric(&h, "x", c, 3, 1, RK_REFHIST_MAX_BINS + 1, &err) ==
          RK_EINVAL);
}

TEST(refhist_categorical)
{
    /* Value v appears v times for v = 1..10, plus 5 missing rows. */
    uint64_t v[60];
    uint8_t miss[60] = {0};
    size_t n = 0;
    for (uint64_t x = 1; x <= 10; x++)
        for (uint64_t k = 0; k < x; k++) v[n++] = x * 1000003ull;
    for (int i = 0; i < 5; i++) {
        miss[n] = 1;
        v[n++] = 0;
    }
    rk_refhist *h;
    rk_err err = {0};
    CHECK_OK(rk_refhist_categorical(&h, "country", v, miss, n, 3, &err));
    CHECK(h->count == 55 && h->missing == 5 && h->ntop == 3);
    CHECK(h->top_values[0] == 10 * 1000003ull && h->top_counts[0] == 10);
    CHECK(h->top_values[2] == 8 * 1000003ull && h->top_counts[2] == 8);
    CHECK(h->other == 55 - 27 && h->distinct == 10 && h->distinct_exact);
    CHECK_EQ_INT(rk_refhist_bin(h, 1), UINT32_MAX);
    rk_refhist *back;
    CHECK_OK(json_round_trip(h, &back));
    CHECK(back->ntop == 3 && back->top_values[1] == h->top_values[1] &&
          back->other == h->other && back->distinct_exact);
    rk_refhist_free(back);
    rk_refhist_free(h);

    /* Values above 2^63 survive JSON (they travel as strings). */
    uint64_t big[2] = {UINT64_MAX, UINT64_MAX - 1};
    CHECK_OK(rk_refhist_categorical(&h, "hash", big, NULL, 2, 5, &err));
    CHECK_OK(json_round_trip(h, &back));
    CHECK(back->top_values[0] == UINT64_MAX - 1 &&   /* ties: smaller first */
          back->top_values[1] == UINT64_MAX);
    rk_refhist_free(back);
    rk_refhist_free(h);
}

/* More distinct values than the summary holds: the heavy hitters are
 * still found, with exact counts, and distinct is a lower bound. */
TEST(refhist_categorical_overflow)
{
    size_t n = 3 * RK_REFHIST_MAX_DISTINCT;
    uint64_t *v = malloc(n * sizeof *v);
    CHECK(v);
    for (size_t i = 0; i < n; i++)
        v[i] = i % 4 == 0 ? 42 : i % 4 == 1 ? 7 : 1000000 + i;
    rk_refhist *h;
    rk_err err = {0};
    CHECK_OK(rk_refhist_categorical(&h, "item", v, NULL, n, 2, &err));
    free(v);
    CHECK(!h->distinct_exact && h->distinct > RK_REFHIST_MAX_DISTINCT);
    CHECK(h->ntop == 2 && h->top_values[0] == 7 && h->top_values[1] == 42);
    CHECK_EQ_INT(h->top_counts[0], n / 4);
    CHECK_EQ_INT(h->top_counts[1], n / 4);
    CHECK_EQ_INT(h->other, n / 2);
    rk_refhist_free(h);
}

TEST(refhist_parse_refuses)
{
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"[", "line"},
        {"[]", "expected an object"},
        {"{\"name\":\"a\",\"kind\":\"ordinal\",\"count\":0,\"missing\":0}", "kind"},
        {"{\"name\":\"\",\"kind\":\"numeric\"}", "name"},
        {"{\"name\":\"a\",\"kind\":\"numeric\",\"count\":-1,\"missing\":0}", "count"},
        {"{\"name\":\"a\",\"kind\":\"numeric\",\"count\":2,\"missing\":0,"
         "\"min\":0,\"max\":1,\"mean\":0.5,\"std\":0.5,\"edges\":[1],"
         "\"counts\":[1]}", "counts for 1 edges"},
        {"{\"name\":\"a\",\"kind\":\"numeric\",\"count\":2,\"missing\":0,"
         "\"min\":0,\"max\":1,\"mean\":0.5,\"std\":0.5,\"edges\":[1],"
         "\"counts\":[1,2]}", "sum to 3"},
        {"{\"name\":\"a\",\"kind\":\"numeric\",\"count\":2,\"missing\":0,"
         "\"min\":0,\"max\":3,\"mean\":0.5,\"std\":0.5,\"edges\":[2,1],"
         "\"counts\":[1,1,0]}", "edges[1]"},
        {"{\"name\":\"a\",\"kind\":\"numeric\",\"count\":2,\"missing\":0,"
         "\"min\":0,\"max\":1,\"mean\":5,\"std\":0.5,\"edges\":[],"
         "\"counts\":[2]}", "min <= mean <= max"},
        {"{\"name\":\"a\",\"kind\":\"numeric\",\"count\":2,\"missing\":0,"
         "\"min\":0,\"max\":1,\"mean\":0.5,\"std\":0.5,\"edges\":[7],"
         "\"counts\":[1,1]}", "edges outside"},
        {"{\"name\":\"a\",\"kind\":\"categorical\",\"count\":3,\"missing\":0,"
         "\"distinct\":2,\"distinct_exact\":true,\"top_values\":[\"1\",\"x\"],"
         "\"top_counts\":[2,1],\"other\":0}", "top_values[1]"},
        {"{\"name\":\"a\",\"kind\":\"categorical\",\"count\":3,\"missing\":0,"
         "\"distinct\":2,\"distinct_exact\":true,\"top_values\":[\"1\",\"2\"],"
         "\"top_counts\":[1,2],\"other\":0}", "top_counts[1]"},
        {"{\"name\":\"a\",\"kind\":\"categorical\",\"count\":4,\"missing\":0,"
         "\"distinct\":2,\"distinct_exact\":true,\"top_values\":[\"1\",\"2\"],"
         "\"top_counts\":[2,1],\"other\":0}", "sum to 3"},
        {"{\"name\":\"a\",\"kind\":\"categorical\",\"count\":3,\"missing\":0,"
         "\"distinct\":2,\"distinct_exact\":true,\"top_values\":[\"1\",\"1\"],"
         "\"top_counts\":[2,1],\"other\":0}", "twice"},
        {"{\"name\":\"a\",\"kind\":\"categorical\",\"count\":3,\"missing\":0,"
         "\"distinct\":2,\"distinct_exact\":1,\"top_values\":[],"
         "\"top_counts\":[],\"other\":3}", "distinct_exact"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_refhist *h = (rk_refhist *)1;
        rk_err err = {0};
        int rc = rk_refhist_parse(&h, cases[i].json, strlen(cases[i].json), &err);
        if (rc == 0 || !strstr(err.msg, cases[i].want))
            fprintf(stderr, "  case %zu: %s: %s\n", i, rk_errname(rc), err.msg);
        CHECK(rc == RK_ECORRUPT || rc == RK_EPARSE);
        CHECK(h == NULL);
        CHECK_CONTAINS(err.msg, cases[i].want);
    }
}

/* ---- meta.json -------------------------------------------------------------------- */

/* A ranking model's metadata with everything filled in. refs[0..2) and
 * *pred are built here and freed by the caller. */
static int full_meta(rk_model_meta *m, rk_metric *mets, double auc,
                     rk_refhist **refs, rk_refhist **pred)
{
    static float age[200], p[200];
    static uint64_t country[200];
    for (int i = 0; i < 200; i++) {
        age[i] = (float)(18 + (i * 37) % 60);
        p[i] = (float)((i * 13) % 100) / 100.0f;
        country[i] = (uint64_t)(i % 7 == 0 ? 49 : i % 3 == 0 ? 33 : 1);
    }
    rk_err err = {0};
    if (rk_refhist_numeric(&refs[0], "age", age, 200, 1, 10, &err) ||
        rk_refhist_categorical(&refs[1], "country", country, NULL, 200, 5,
                               &err) ||
        rk_refhist_numeric(pred, "prediction", p, 200, 1, 20, &err))
        return -1;
    mets[0] = (rk_metric){"auc", auc};
    mets[1] = (rk_metric){"logloss", 0.45};
    mets[2] = (rk_metric){"ne", 0.91};
    mets[3] = (rk_metric){"calibration", 1.02};
    mets[4] = (rk_metric){"ndcg@10", 0.5};
    memset(m, 0, sizeof *m);
    m->name = "ctr";
    m->kind = "gbdt";
    m->created_ms = rk_civil_ms(2026, 3, 1) + 3600000;
    m->train_from_ms = rk_civil_ms(2026, 2, 1);
    m->train_to_ms = rk_civil_ms(2026, 2, 22);
    m->valid_from_ms = rk_civil_ms(2026, 2, 22);
    m->valid_to_ms = rk_civil_ms(2026, 3, 1);
    m->train_rows = 1200000;
    m->valid_rows = 300000;
    m->feature_schema_hash = 0x0123456789abcdefull;
    m->metrics = mets;
    m->nmetrics = 5;
    m->params_json = "{\"max_depth\":6,\"eta\":0.1}";
    m->features = refs;
    m->nfeatures = 2;
    m->prediction = *pred;
    return 0;
}

TEST(meta_round_trip)
{
    rk_model_meta m, back;
    rk_metric mets[5];
    rk_refhist *refs[2] = {0}, *pred = NULL;
    CHECK(full_meta(&m, mets, 0.8, refs, &pred) == 0);
    m.version = 4;
    rk_buf b;
    rk_buf_init(&b, 0);
    rk_err err = {0};
    CHECK_OK(rk_model_meta_json(&m, &b, &err));
    CHECK_OK(rk_model_meta_parse(&back, b.data, b.len, &err));
    CHECK_STR(back.name, "ctr");
    CHECK_STR(back.kind, "gbdt");
    CHECK(back.version == 4 && back.created_ms == m.created_ms &&
          back.train_from_ms == m.train_from_ms &&
          back.valid_to_ms == m.valid_to_ms && back.train_rows == 1200000 &&
          back.valid_rows == 300000 &&
          back.feature_schema_hash == 0x0123456789abcdefull);
    CHECK_EQ_INT(back.nmetrics, 5);
    CHECK(rk_model_meta_metric(&back, "auc")->value == 0.8);
    CHECK(rk_model_meta_metric(&back, "ndcg@10")->value == 0.5);
    CHECK(rk_model_meta_metric(&back, "map") == NULL);
    CHECK_CONTAINS(back.params_json, "\"max_depth\":6");
    CHECK(back.nfeatures == 2 && back.features[1]->kind == RK_REFHIST_CATEGORICAL &&
          back.prediction && back.prediction->nbins == pred->nbins);
    CHECK_CONTAINS(b.data, "\"created\":\"2026-03-01T01:00:00.000Z\"");
    CHECK_CONTAINS(b.data, "\"feature_schema_hash\":\"0123456789abcdef\"");
    /* Writing what was read gives the same document, but for params,
     * which jansson rewrites with 17 digits ("eta":0.1 reads back as
     * 0.10000000000000001, the same double). */
    rk_buf b2;
    rk_buf_init(&b2, 0);
    CHECK_OK(rk_model_meta_json(&back, &b2, &err));
    char *p1 = strstr(b.data, ",\"params\""), *p2 = strstr(b2.data, ",\"params\"");
    CHECK(p1 && p2 && p1 - b.data == p2 - b2.data);
    CHECK(memcmp(b.data, b2.data, (size_t)(p1 - b.data)) == 0);
    CHECK_STR(strstr(p1, ",\"reference\""), strstr(p2, ",\"reference\""));
    CHECK_CONTAINS(p2, "\"eta\":0.10000000000000001");
    rk_buf_free(&b2);
    rk_model_meta_free(&back);
    rk_buf_free(&b);

    /* Bad inputs to the writer. */
    rk_metric badm[2] = {{"auc", 1}, {"auc", 2}};
    m.metrics = badm;
    m.nmetrics = 2;
    CHECK(rk_model_meta_json(&m, &b, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "twice");
    badm[1].name = "a\"b";
    CHECK(rk_model_meta_json(&m, &b, &err) == RK_EINVAL);
    m.nmetrics = 0;
    m.params_json = "[1]";
    CHECK(rk_model_meta_json(&m, &b, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "params");
    rk_buf_free(&b);
    rk_refhist_free(refs[0]);
    rk_refhist_free(refs[1]);
    rk_refhist_free(pred);
}

TEST(meta_parse_variants)
{
    /* What `rankd train` writes for retrieval models. */
    const char *legacy = "{\"name\":\"ials\",\"kind\":\"ials\",\"trained_at\":"
                         "\"2026-01-02T03:04:05.000Z\",\"train_seconds\":1.5,"
                         "\"data\":{\"users\":50},\"params\":{\"factors\":16}}";
    rk_model_meta m;
    rk_err err = {0};
    CHECK_OK(rk_model_meta_parse(&m, legacy, strlen(legacy), &err));
    CHECK_STR(m.kind, "ials");
    CHECK(m.created_ms == rk_civil_ms(2026, 1, 2) + 3 * 3600000 + 4 * 60000 + 5000);
    CHECK(m.nmetrics == 0 && m.nfeatures == 0 && !m.prediction);
    rk_model_meta_free(&m);
    static const struct {
        const char *json, *want;
        int code;
    } bad[] = {
        {"{\"rankd_meta\":2}", "rankd_meta 2", RK_EVERSION},
        {"[]", "not an object", RK_ECORRUPT},
        {"{\"version\":0}", "version", RK_ECORRUPT},
        {"{\"created\":\"yesterday\"}", "created", RK_ECORRUPT},
        {"{\"created\":\"999999999999999999\"}", "created", RK_ECORRUPT},
        {"{\"train_window\":{\"from\":1}}", "train_window", RK_ECORRUPT},
        {"{\"rows\":{\"train\":-3}}", "rows.train", RK_ECORRUPT},
        {"{\"feature_schema_hash\":\"xyz\"}", "feature_schema_hash", RK_ECORRUPT},
        {"{\"metrics\":{\"auc\":\"high\"}}", "auc", RK_ECORRUPT},
        {"{\"metrics\":[0.5]}", "metrics", RK_ECORRUPT},
        {"{\"params\":3}", "params", RK_ECORRUPT},
        {"{\"reference\":{\"features\":[{\"name\":\"x\"}]}}",
         "reference.features[0]", RK_ECORRUPT},
        {"{\"name\":\"a\",\"name\":\"b\"}", "duplicate", RK_EPARSE},
        {"{\"name\":\"a\\u0000b\"}", "u0000", RK_EPARSE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = rk_model_meta_parse(&m, bad[i].json, strlen(bad[i].json), &err);
        if (rc != bad[i].code || !strstr(err.msg, bad[i].want))
            fprintf(stderr, "  case %zu: %s: %s\n", i, rk_errname(rc), err.msg);
        CHECK(rc == bad[i].code);
        CHECK_CONTAINS(err.msg, bad[i].want);
        CHECK(m.owned == NULL && m.metrics == NULL);
    }
}

/* ---- the registry ------------------------------------------------------------------ */

/* Publishes a small ranking model whose metrics are (auc, logloss). */
static int publish(rk_registry *r, const char *name, double auc, double ll,
                   const rk_publish_opts *o, rk_publish_result *res)
{
    rk_metric mets[2] = {{"auc", auc}, {"logloss", ll}};
    rk_model_meta m = {0};
    m.name = name;
    m.metrics = mets;
    m.nmetrics = 2;
    m.valid_from_ms = rk_civil_ms(2026, 3, 1);
    m.valid_to_ms = rk_civil_ms(2026, 3, 8);
    char payload[64];
    snprintf(payload, sizeof payload, "model auc=%g", auc);
    rk_publish_result tmp;
    rk_err err = {0};
    int rc = rk_registry_publish(r, &m, RK_MODEL_FTRL, payload, strlen(payload),
                                 o, res ? res : &tmp, &err);
    if (rc) fprintf(stderr, "  publish: %s\n", err.msg);
    return rc;
}

static rk_version_status status_of(rk_registry *r, const char *name,
                                   uint32_t v)
{
    rk_version_info vi;
    rk_err err = {0};
    if (rk_registry_show(r, name, v, &vi, &err)) return (rk_version_status)-1;
    rk_version_status s = vi.status;
    rk_version_info_clear(&vi);
    return s;
}

TEST(promote_and_rollback)
{
    const char *dir = rk_test_tmpdir("reg-promote");
    rk_registry *r;
    rk_err err = {0};
    CHECK_OK(rk_registry_open(&r, dir, NULL, &err));
    for (int i = 1; i <= 3; i++) CHECK_OK(publish(r, "ctr", 0.7 + i * 0.01, 0.5, NULL, NULL));
    uint32_t cur, prev;
    CHECK_OK(rk_registry_current(r, "ctr", &cur, &prev, &err));
    CHECK(cur == 3 && prev == 2);
    CHECK(link_of(dir, "ctr", "current") == 3 && link_of(dir, "ctr", "previous") == 2);
    CHECK(status_of(r, "ctr", 1) == RK_VERSION_RETIRED);

    /* Promote 1 by hand: 3 becomes previous. */
    CHECK_OK(rk_registry_promote(r, "ctr", 1, &err));
    CHECK_OK(rk_registry_current(r, "ctr", &cur, &prev, &err));
    CHECK(cur == 1 && prev == 3);
    CHECK(link_of(dir, "ctr", "current") == 1 && link_of(dir, "ctr", "previous") == 3);
    CHECK_OK(rk_registry_promote(r, "ctr", 1, &err));  /* no-op */
    CHECK_OK(rk_registry_current(r, "ctr", &cur, &prev, &err));
    CHECK(cur == 1 && prev == 3);

    /* Rollback undoes the last promotion... */
    uint32_t now;
    CHECK_OK(rk_registry_rollback(r, "ctr", &now, &err));
    CHECK(now == 3);
    CHECK(status_of(r, "ctr", 1) == RK_VERSION_ROLLED_BACK);
    CHECK(status_of(r, "ctr", 2) == RK_VERSION_PREVIOUS);
    /* ...and a second one goes further back, not back to 1. */
    CHECK_OK(rk_registry_rollback(r, "ctr", &now, &err));
    CHECK(now == 2);
    CHECK(link_of(dir, "ctr", "current") == 2 && link_of(dir, "ctr", "previous") == 0);
    CHECK(status_of(r, "ctr", 3) == RK_VERSION_ROLLED_BACK);
    CHECK(rk_registry_rollback(r, "ctr", &now, &err) == RK_ESTATE);
    CHECK_CONTAINS(err.msg, "no earlier version");
    /* Promoting a rolled-back version brings it back explicitly. */
    CHECK_OK(rk_registry_promote(r, "ctr", 3, &err));
    CHECK(status_of(r, "ctr", 3) == RK_VERSION_CURRENT);
    CHECK(status_of(r, "ctr", 2) == RK_VERSION_PREVIOUS);
    CHECK(status_of(r, "ctr", 1) == RK_VERSION_ROLLED_BACK);

    /* Unknown names and versions list what exists. */
    CHECK(rk_registry_promote(r, "ctr", 9, &err) == RK_ENOTFOUND);
    CHECK_CONTAINS(err.msg, "no version 9 (versions: 3, 2, 1)");
    CHECK(rk_registry_rollback(r, "cvr", &now, &err) == RK_ENOTFOUND);
    CHECK_CONTAINS(err.msg, "no model named 'cvr'");
    CHECK_CONTAINS(err.msg, "models: ctr");
    CHECK(rk_registry_promote(r, "../etc", 1, &err) == RK_EINVAL);

    /* Everything is in registry.json, so a new handle sees the same. */
    rk_registry_close(r);
    CHECK_OK(rk_registry_open(&r, dir, NULL, &err));
    rk_version_info *vi;
    size_t n;
    CHECK_OK(rk_registry_versions(r, "ctr", &vi, &n, &err));
    CHECK(n == 3 && vi[0].version == 3 && vi[0].status == RK_VERSION_CURRENT &&
          vi[2].version == 1);
    CHECK(vi[0].meta.nmetrics == 2 && vi[0].meta.version == 3 &&
          NEAR(rk_model_meta_metric(&vi[0].meta, "auc")->value, 0.73));
    CHECK_STR(vi[0].meta.artifact, "model.rk");
    CHECK_EQ_INT(vi[0].meta.artifact_bytes, 32 + strlen("model auc=0.73"));
    rk_registry_versions_free(vi, n);
    char **names;
    CHECK_OK(rk_registry_names(r, &names, &n, &err));
    CHECK(n == 1);
    CHECK_STR(names[0], "ctr");
    rk_registry_names_free(names, n);
    /* The artifact of the current version reads back. */
    char p[700];
    snprintf(p, sizeof p, "%s/ctr/current/model.rk", dir);
    rk_artifact a;
    CHECK_OK(rk_artifact_read(p, &a, &err));
    CHECK(a.kind == RK_MODEL_FTRL && a.len == strlen("model auc=0.73"));
    rk_artifact_free(&a);
    rk_registry_close(r);
    rk_test_rmdir(dir);
}

TEST(retention_keeps_current_and_previous)
{
    const char *dir = rk_test_tmpdir("reg-keep");
    rk_registry *r;
    rk_err err = {0};
    rk_registry_opts ro = {2};
    CHECK_OK(rk_registry_open(&r, dir, &ro, &err));
    rk_publish_opts cand = {0};
    cand.no_promote = 1;
    CHECK_OK(publish(r, "m", 0.7, 0.5, NULL, NULL));       /* 1: current */
    CHECK_OK(publish(r, "m", 0.71, 0.5, NULL, NULL));      /* 2: current */
    CHECK_OK(rk_registry_rollback(r, "m", NULL, &err));    /* 1 current */
    for (int i = 0; i < 4; i++) CHECK_OK(publish(r, "m", 0.6, 0.5, &cand, NULL));
    /* Versions 3..6 are candidates: the newest two stay, and 1 (current)
     * stays although it is the oldest; 2 (rolled back) and 3, 4 go. */
    CHECK(exists("%s/m/%s", dir, "1") && exists("%s/m/%s", dir, "5") &&
          exists("%s/m/%s", dir, "6"));
    CHECK(!exists("%s/m/%s", dir, "2") && !exists("%s/m/%s", dir, "3") &&
          !exists("%s/m/%s", dir, "4"));
    CHECK(status_of(r, "m", 6) == RK_VERSION_CANDIDATE);
    CHECK(link_of(dir, "m", "current") == 1);
    /* A previous version is kept too. */
    CHECK_OK(rk_registry_promote(r, "m", 6, &err));
    CHECK_OK(publish(r, "m", 0.6, 0.5, &cand, NULL));      /* 7 */
    CHECK_OK(publish(r, "m", 0.6, 0.5, &cand, NULL));      /* 8 */
    CHECK(exists("%s/m/%s", dir, "1") && exists("%s/m/%s", dir, "6") &&
          exists("%s/m/%s", dir, "7") && exists("%s/m/%s", dir, "8") &&
          !exists("%s/m/%s", dir, "5"));
    /* Numbers are never reused, even after deletions. */
    rk_publish_result res;
    CHECK_OK(publish(r, "m", 0.6, 0.5, &cand, &res));
    CHECK_EQ_INT(res.version, 9);
    /* No temporary or half-deleted directory is left. */
    char p[700];
    snprintf(p, sizeof p, "%s/m", dir);
    DIR *d = opendir(p);
    CHECK(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        CHECK(strncmp(de->d_name, ".tmp-", 5) != 0);
        CHECK(strncmp(de->d_name, ".del-", 5) != 0);
    }
    closedir(d);
    rk_registry_close(r);
    rk_test_rmdir(dir);
}

/* A directory written before the registry existed: versions and a
 * `current` link, no registry.json. */
TEST(legacy_directory)
{
    const char *dir = rk_test_tmpdir("reg-legacy");
    char p[700];
    snprintf(p, sizeof p, "%s/ials", dir);
    CHECK(mkdir(p, 0755) == 0);
    for (int v = 1; v <= 2; v++) {
        snprintf(p, sizeof p, "%s/ials/%d", dir, v);
        CHECK(mkdir(p, 0755) == 0);
        snprintf(p, sizeof p, "%s/ials/%d/meta.json", dir, v);
        CHECK(write_all(p, "{\"name\":\"ials\",\"kind\":\"ials\"}", 29) == 0);
    }
    snprintf(p, sizeof p, "%s/ials/current", dir);
    CHECK(symlink("2", p) == 0);
    rk_registry *r;
    rk_err err = {0};
    CHECK_OK(rk_registry_open(&r, dir, NULL, &err));
    CHECK(status_of(r, "ials", 2) == RK_VERSION_CURRENT);
    CHECK(status_of(r, "ials", 1) == RK_VERSION_CANDIDATE);
    CHECK_OK(rk_registry_promote(r, "ials", 1, &err));
    CHECK(status_of(r, "ials", 2) == RK_VERSION_PREVIOUS);
    CHECK_OK(rk_registry_rollback(r, "ials", NULL, &err));
    CHECK(link_of(dir, "ials", "current") == 2);
    /* A damaged meta.json is reported with its version, not fatal. */
    snprintf(p, sizeof p, "%s/ials/1/meta.json", dir);
    CHECK(write_all(p, "{oops", 5) == 0);
    rk_version_info *vi;
    size_t n;
    CHECK_OK(rk_registry_versions(r, "ials", &vi, &n, &err));
    CHECK(n == 2 && vi[1].meta_error && !vi[0].meta_error);
    CHECK_CONTAINS(vi[1].meta_error, "meta.json");
    rk_registry_versions_free(vi, n);
    /* A damaged registry.json is an error naming it. */
    snprintf(p, sizeof p, "%s/ials/registry.json", dir);
    CHECK(write_all(p, "{\"rankd_registry\":1,\"stack\":[1,1]}", 34) == 0);
    CHECK(rk_registry_versions(r, "ials", &vi, &n, &err) == RK_ECORRUPT);
    CHECK_CONTAINS(err.msg, "registry.json");
    rk_registry_close(r);
    rk_test_rmdir(dir);
}

/* A writer killed between the registry.json commit and the link switch:
 * the next writer finishes the switch. */
TEST(links_repaired_by_next_writer)
{
    const char *dir = rk_test_tmpdir("reg-repair");
    rk_registry *r;
    rk_err err = {0};
    CHECK_OK(rk_registry_open(&r, dir, NULL, &err));
    CHECK_OK(publish(r, "m", 0.7, 0.5, NULL, NULL));
    CHECK_OK(publish(r, "m", 0.7, 0.5, NULL, NULL));
    /* Simulate: state says 2 is current, links still on 1 / none. */
    char p[700];
    snprintf(p, sizeof p, "%s/m/current", dir);
    unlink(p);
    CHECK(symlink("1", p) == 0);
    snprintf(p, sizeof p, "%s/m/previous", dir);
    unlink(p);
    uint32_t cur;
    CHECK_OK(rk_registry_current(r, "m", &cur, NULL, &err));
    CHECK(cur == 2);                 /* readers trust the commit point */
    CHECK_OK(rk_registry_promote(r, "m", 2, &err));  /* any writer */
    CHECK(link_of(dir, "m", "current") == 2 && link_of(dir, "m", "previous") == 1);
    rk_registry_close(r);
    rk_test_rmdir(dir);
}

/* ---- the gate ------------------------------------------------------------------------ */

TEST(gate_table)
{
    static const rk_metric cur[] = {{"auc", 0.80}, {"logloss", 0.45},
                                    {"calibration", 0.98}, {"ndcg@10", 0.5}};
    static const rk_gate_rule auc_ll[] = {
        {"auc", RK_METRIC_AUTO, 0.002, 0, 1},
        {"logloss", RK_METRIC_AUTO, 0.005, 0, 1}};
    static const rk_gate_rule rel[] = {{"logloss", RK_METRIC_LOWER, 0.01, 1, 0}};
    static const rk_gate_rule cal[] = {{"calibration", RK_METRIC_AUTO, 0.01, 0, 0}};
    static const rk_gate_rule need_map[] = {{"map", RK_METRIC_HIGHER, 0, 0, 1}};
    static const rk_gate_rule opt_map[] = {{"map", RK_METRIC_HIGHER, 0, 0, 0},
                                           {"auc", RK_METRIC_AUTO, 0, 0, 0}};
    static const struct {
        rk_metric cand[4];
        size_t n;
        const rk_gate_rule *rules;
        size_t nrules;
        int window_differs, allow;
        int pass;
        const char *want;
    } cases[] = {
        /* Higher AUC, lower log loss: passes. */
        {{{"auc", 0.81}, {"logloss", 0.44}}, 2, auc_ll, 2, 0, 0, 1,
         "gate passed (2 metrics)"},
        /* AUC lower by 0.001 < 0.002 allowed: passes, says so. */
        {{{"auc", 0.799}, {"logloss", 0.45}}, 2, auc_ll, 2, 0, 0, 1,
         "within 0.002"},
        /* AUC lower by 0.01: fails naming auc. */
        {{{"auc", 0.79}, {"logloss", 0.44}}, 2, auc_ll, 2, 0, 0, 0,
         "auc 0.79 vs 0.8: worse by 0.01, over the allowed 0.002"},
        /* Log loss up by 0.006 > 0.005: direction-aware failure. */
        {{{"auc", 0.85}, {"logloss", 0.456}}, 2, auc_ll, 2, 0, 0, 0,
         "logloss 0.456 vs 0.45: worse by 0.006"},
        /* Relative: 0.454 is 0.9% worse than 0.45: within 1%. */
        {{{"logloss", 0.454}}, 1, rel, 1, 0, 0, 1, "within 0.0045"},
        {{{"logloss", 0.46}}, 1, rel, 1, 0, 0, 0, "over the allowed 0.0045"},
        /* Calibration: 1.02 is as far from 1 as 0.98: not worse; 1.05 is. */
        {{{"calibration", 1.02}}, 1, cal, 1, 0, 0, 1, "not worse"},
        {{{"calibration", 1.05}}, 1, cal, 1, 0, 0, 0, "closer to 1 is better"},
        /* Required metric missing from the candidate: fails. */
        {{{"auc", 0.9}}, 1, need_map, 1, 0, 0, 0, "map: candidate has no value"},
        /* Optional metric the current model lacks: skipped, auc decides. */
        {{{"auc", 0.9}, {"map", 0.3}}, 2, opt_map, 2, 0, 0, 1,
         "map: current has no value (skipped)"},
        /* Defaults: every shared metric at 0.001. */
        {{{"auc", 0.8005}, {"logloss", 0.4505}, {"ndcg@10", 0.4}}, 3, NULL, 0,
         0, 0, 0, "ndcg@10 0.4 vs 0.5"},
        {{{"auc", 0.8005}, {"logloss", 0.4505}}, 2, NULL, 0, 0, 0, 1,
         "gate passed"},
        /* Nothing to compare: fails. */
        {{{"recall@5", 0.3}}, 1, NULL, 0, 0, 0, 0, "no metric to compare"},
        /* Different validation windows: fails unless allowed. */
        {{{"auc", 0.9}}, 1, NULL, 0, 1, 0, 0, "validation windows differ"},
        {{{"auc", 0.9}}, 1, NULL, 0, 1, 1, 1, "gate passed"},
        /* NaN in the candidate counts as missing. */
        {{{"auc", NAN}, {"logloss", 0.4}}, 2, auc_ll, 2, 0, 0, 0,
         "auc: candidate has no value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rk_metric_set c = {cases[i].cand, cases[i].n, 100, 200};
        rk_metric_set u = {cur, 4, 100, cases[i].window_differs ? 300 : 200};
        rk_gate_opts o = {cases[i].rules, cases[i].nrules, cases[i].allow};
        rk_gate_decision d;
        rk_err err = {0};
        CHECK_OK(rk_registry_gate(&c, &u, &o, &d, &err));
        if (d.pass != cases[i].pass || !strstr(d.reason, cases[i].want))
            fprintf(stderr, "  case %zu: pass %d: %s\n", i, d.pass, d.reason);
        CHECK(d.pass == cases[i].pass);
        CHECK_CONTAINS(d.reason, cases[i].want);
    }
    /* Bad rules. */
    rk_metric_set s = {cur, 4, 0, 0};
    rk_gate_rule unknown = {"clicks", RK_METRIC_AUTO, 0, 0, 0};
    rk_gate_rule negative = {"auc", RK_METRIC_AUTO, -1, 0, 0};
    rk_gate_opts o1 = {&unknown, 1, 0}, o2 = {&negative, 1, 0};
    rk_gate_decision d;
    rk_err err = {0};
    CHECK(rk_registry_gate(&s, &s, &o1, &d, &err) == RK_EINVAL);
    CHECK_CONTAINS(err.msg, "clicks");
    CHECK(rk_registry_gate(&s, &s, &o2, &d, &err) == RK_EINVAL);
    CHECK(rk_metric_direction("ndcg@5") == RK_METRIC_HIGHER);
    CHECK(rk_metric_direction("map") == RK_METRIC_HIGHER);
    CHECK(rk_metric_direction("ne") == RK_METRIC_LOWER);
    CHECK(rk_metric_direction("auc_user") == RK_METRIC_AUTO);
    CHECK(rk_metric_direction("hit_rate") == RK_METRIC_HIGHER);
}

TEST(publish_with_gate)
{
    const char *dir = rk_test_tmpdir("reg-gate");
    rk_registry *r;
    rk_err err = {0};
    CHECK_OK(rk_registry_open(&r, dir, NULL, &err));
    rk_gate_rule rules[] = {{"auc", RK_METRIC_AUTO, 0.002, 0, 1},
                            {"logloss", RK_METRIC_AUTO, 0.002, 0, 0}};
    rk_gate_opts g = {rules, 2, 0};
    rk_publish_opts o = {&g, NULL, 0};
    rk_publish_result res;
    /* No current version: promoted whatever its metrics. */
    CHECK_OK(publish(r, "ctr", 0.80, 0.45, &o, &res));
    CHECK(res.version == 1 && res.promoted);
    CHECK_CONTAINS(res.reason, "no current version");
    /* Worse AUC: stays a candidate, and says why. */
    CHECK_OK(publish(r, "ctr", 0.79, 0.44, &o, &res));
    CHECK(res.version == 2 && !res.promoted);
    CHECK_CONTAINS(res.reason, "gate failed");
    CHECK_CONTAINS(res.reason, "auc 0.79 vs 0.8");
    CHECK_CONTAINS(res.reason, "against version 1");
    CHECK(link_of(dir, "ctr", "current") == 1);
    rk_version_info vi;
    CHECK_OK(rk_registry_show(r, "ctr", 2, &vi, &err));
    CHECK(vi.status == RK_VERSION_CANDIDATE && vi.gated && !vi.gate_pass);
    CHECK_CONTAINS(vi.gate_reason, "auc 0.79");
    rk_version_info_clear(&vi);
    /* Better: promoted. */
    CHECK_OK(publish(r, "ctr", 0.81, 0.44, &o, &res));
    CHECK(res.version == 3 && res.promoted);
    CHECK_CONTAINS(res.reason, "gate passed");
    CHECK(link_of(dir, "ctr", "current") == 3 && link_of(dir, "ctr", "previous") == 1);
    CHECK_OK(rk_registry_show(r, "ctr", 0, &vi, &err));
    CHECK(vi.version == 3 && vi.gated && vi.gate_pass);
    rk_version_info_clear(&vi);
    /* The current model re-evaluated on the candidate's window is what
     * counts when given: here it scores 0.85 there, so 0.82 fails. */
    rk_metric re[] = {{"auc", 0.85}};
    rk_metric_set cur = {re, 1, rk_civil_ms(2026, 3, 1), rk_civil_ms(2026, 3, 8)};
    o.current = &cur;
    CHECK_OK(publish(r, "ctr", 0.82, 0.44, &o, &res));
    CHECK(!res.promoted);
    CHECK_CONTAINS(res.reason, "auc 0.82 vs 0.85");
    /* Another window than the current one's: refused as not comparable. */
    rk_metric_set other = {re, 1, rk_civil_ms(2026, 2, 1), rk_civil_ms(2026, 2, 8)};
    o.current = &other;
    CHECK_OK(publish(r, "ctr", 0.99, 0.1, &o, &res));
    CHECK(!res.promoted);
    CHECK_CONTAINS(res.reason, "validation windows differ");
    rk_registry_close(r);
    rk_test_rmdir(dir);
}

/* ---- crashes ------------------------------------------------------------------------- */

#define BIG (3u << 19) /* 1.5 MiB payloads: writes take a while */
#define ROUNDS 20

/* Payload of version-like number v: every byte derived from v. */
static void fill_payload(unsigned char *p, size_t n, uint32_t v)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(v * 31 + i / 4096);
}

static int payload_ok(const rk_artifact *a, uint32_t v)
{
    const unsigned char *p = a->payload;
    if (a->len != BIG) return 0;
    for (size_t i = 0; i < a->len; i += 4096)
        if (p[i] != (unsigned char)(v * 31 + i / 4096)) return 0;
    return 1;
}

/* mode 0: publish and promote; mode 1: publish through a gate that
 * always fails (candidates only); reports each acknowledged version. */
static void child_publisher(const char *models, int mode, int fd)
{
    rk_registry *r;
    rk_err err = {0};
    if (rk_registry_open(&r, models, NULL, &err)) _exit(2);
    unsigned char *buf = malloc(BIG);
    if (!buf) _exit(3);
    rk_gate_rule rule = {"auc", RK_METRIC_AUTO, 0, 0, 1};
    rk_gate_opts g = {&rule, 1, 0};
    rk_publish_opts o = {&g, NULL, 0};
    for (uint32_t i = 0;; i++) {
        /* The payload is keyed by the version it will get: the registry
         * numbers versions after the newest that exists. */
        rk_metric m[1] = {{"auc", mode ? 0.5 : 0.9}};
        rk_model_meta meta = {0};
        meta.name = "big";
        meta.metrics = m;
        meta.nmetrics = 1;
        uint32_t next;
        rk_version_info *vi;
        size_t n;
        int rc = rk_registry_versions(r, "big", &vi, &n, &err);
        if (rc == RK_ENOTFOUND) {
            vi = NULL;
            n = 0;
        } else if (rc) {
            _exit(4);
        }
        next = n ? vi[0].version + 1 : 1;
        rk_registry_versions_free(vi, n);
        fill_payload(buf, BIG, next);
        rk_publish_result res;
        if (rk_registry_publish(r, &meta, RK_MODEL_GBDT, buf, BIG,
                                mode ? &o : NULL, &res, &err))
            _exit(5);
        if (write(fd, &res.version, sizeof res.version) != sizeof res.version)
            _exit(6);
    }
}

/* Everything under a final name is complete: each version directory has
 * a valid model.rk whose payload is that version's and a meta.json that
 * says so, and nothing else; `current` resolves to such a directory. */
static int check_complete(const char *models)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/big", models);
    DIR *d = opendir(p);
    if (!d) return 1; /* killed before the first directory: fine */
    struct dirent *de;
    int bad = 0;
    while ((de = readdir(d)) != NULL && !bad) {
        const char *nm = de->d_name;
        if (nm[0] < '1' || nm[0] > '9') continue;
        uint32_t v = (uint32_t)atoi(nm);
        rk_artifact a;
        rk_err err = {0};
        snprintf(p, sizeof p, "%s/big/%s/model.rk", models, nm);
        if (rk_artifact_read(p, &a, &err) || !payload_ok(&a, v)) {
            fprintf(stderr, "  %s: %s\n", p, err.msg);
            bad = 1;
        }
        rk_artifact_free(&a);
        snprintf(p, sizeof p, "%s/big/%s/meta.json", models, nm);
        unsigned char *txt;
        size_t n;
        rk_model_meta m;
        if (read_all(p, &txt, &n) ||
            rk_model_meta_parse(&m, (char *)txt, n, &err) || m.version != v) {
            fprintf(stderr, "  %s: unreadable\n", p);
            bad = 1;
        } else {
            rk_model_meta_free(&m);
        }
        free(txt);
        snprintf(p, sizeof p, "%s/big/%s", models, nm);
        DIR *vd = opendir(p);
        struct dirent *f;
        while (vd && (f = readdir(vd)) != NULL)
            if (strcmp(f->d_name, ".") && strcmp(f->d_name, "..") &&
                strcmp(f->d_name, "model.rk") && strcmp(f->d_name, "meta.json")) {
                fprintf(stderr, "  %s: stray %s\n", p, f->d_name);
                bad = 1;
            }
        if (vd) closedir(vd);
    }
    closedir(d);
    return !bad;
}

static void crash_rounds(int mode, const char *tag)
{
    const char *tmp = rk_test_tmpdir(tag);
    char models[600];
    snprintf(models, sizeof models, "%s", tmp);
    rk_registry *r;
    rk_err err = {0};
    CHECK_OK(rk_registry_open(&r, models, NULL, &err));
    if (mode == 1) {
        /* The version that must stay current through every kill. */
        static unsigned char first[BIG];
        fill_payload(first, BIG, 1);
        rk_metric m[1] = {{"auc", 0.8}};
        rk_model_meta meta = {0};
        meta.name = "big";
        meta.metrics = m;
        meta.nmetrics = 1;
        rk_publish_result res;
        CHECK_OK(rk_registry_publish(r, &meta, RK_MODEL_GBDT, first, BIG, NULL,
                                     &res, &err));
        CHECK(res.version == 1 && res.promoted);
    }
    unsigned seed = 777u + (unsigned)mode;
    uint32_t acked = 0;
    long total = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        CHECK(pipe(fds) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_publisher(models, mode, fds[1]);
            _exit(0);
        }
        close(fds[1]);
        seed = seed * 1103515245u + 12345u;
        usleep(5000 + (seed >> 8) % 120000);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        uint32_t v;
        while (read(fds[0], &v, sizeof v) == sizeof v) {
            acked = v;
            total++;
        }
        close(fds[0]);
        if (WIFEXITED(st))
            fprintf(stderr, "  publisher exited with %d\n", WEXITSTATUS(st));
        CHECK(!WIFEXITED(st));

        /* Before any repair: what a server would load right now. */
        CHECK(check_complete(models));
        uint32_t link = link_of(models, "big", "current"), cur, prev;
        if (mode == 1) CHECK_EQ_INT(link, 1);
        if (acked && mode == 0) CHECK(link >= 1);
        CHECK_OK(rk_registry_current(r, "big", &cur, &prev, &err));
        /* The committed state never goes backwards from what was
         * acknowledged, and the link lags it by at most the one switch
         * in flight. */
        if (mode == 0) CHECK(cur >= acked && link <= cur && (link == cur || link >= acked));
        else CHECK_EQ_INT(cur, 1);
        /* The next writer repairs the links and sweeps the leftovers. */
        if (cur) CHECK_OK(rk_registry_promote(r, "big", cur, &err));
        CHECK_EQ_INT(link_of(models, "big", "current"), cur);
        CHECK_EQ_INT(link_of(models, "big", "previous"), prev);
        CHECK(check_complete(models));
    }
    printf("# %s: %d kills, %ld acknowledged publishes verified\n", tag,
           ROUNDS, total);
    CHECK(total > 0);
    rk_registry_close(r);
    rk_test_rmdir(models);
}

TEST(sigkill_publish_promote) { crash_rounds(0, "reg-crash-promote"); }
TEST(sigkill_publish_candidates) { crash_rounds(1, "reg-crash-cand"); }

/* The artifact file alone, rewritten in place: after any kill the final
 * name holds one complete artifact, the last one acknowledged or the one
 * being written. */
TEST(sigkill_artifact_rewrite)
{
    const char *dir = rk_test_tmpdir("art-crash");
    static unsigned char buf[BIG];
    rk_err err = {0};
    fill_payload(buf, BIG, 0);
    CHECK_OK(rk_artifact_write(dir, "model.rk", RK_MODEL_FM, buf, BIG, &err));
    char path[600];
    snprintf(path, sizeof path, "%s/model.rk", dir);
    unsigned seed = 4242;
    uint32_t next = 1, acked = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        CHECK(pipe(fds) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            for (uint32_t v = next;; v++) {
                fill_payload(buf, BIG, v);
                if (rk_artifact_write(dir, "model.rk", RK_MODEL_FM, buf, BIG,
                                      &err))
                    _exit(2);
                if (write(fds[1], &v, sizeof v) != sizeof v) _exit(3);
            }
        }
        close(fds[1]);
        seed = seed * 1103515245u + 12345u;
        usleep(1000 + (seed >> 8) % 40000);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        uint32_t v;
        while (read(fds[0], &v, sizeof v) == sizeof v) acked = v;
        close(fds[0]);
        rk_artifact a;
        int rc = rk_artifact_read(path, &a, &err);
        if (rc) fprintf(stderr, "  round %d: %s\n", round, err.msg);
        CHECK_OK(rc);
        /* The acknowledged version or the next one, never anything torn. */
        CHECK(payload_ok(&a, acked) || payload_ok(&a, acked + 1) ||
              (acked == 0 && payload_ok(&a, next)));
        uint32_t have = payload_ok(&a, acked + 1) ? acked + 1 : acked;
        rk_artifact_free(&a);
        next = have + 1;
        acked = have;
    }
    rk_test_rmdir(dir);
}

/* ---- allocation failures ------------------------------------------------------------- */

/* jansson 2.14's lexer ignores a failed growth of its token buffer
 * (tokens over 15 bytes): the token loses characters, or a later step
 * writes outside the buffer and crashes — reproduced with
 * '{"rankd_registry":1}' when its 4th allocation fails, with no rankd
 * code involved. So while this test injects failures, jansson allocates
 * from libc and only rankd's own allocations fail; rankd's JSON loader
 * still treats any failure during a parse as RK_ENOMEM (see
 * rk__train_json_load). */
TEST(allocation_failures)
{
    json_set_alloc_funcs(malloc, free);
    /* This test is about memory, not durability, and every failed
     * publish costs a few fsyncs: on tmpfs they are free. */
    char shm[] = "/dev/shm/rk-test-reg-nomem-XXXXXX";
    const char *dir = mkdtemp(shm);
    if (!dir) dir = rk_test_tmpdir("reg-nomem");
    rk_registry *r;
    rk_err err = {0};
    rk_model_meta m;
    rk_metric mets[5];
    rk_refhist *refs[2] = {0}, *pred = NULL;
    CHECK(full_meta(&m, mets, 0.8, refs, &pred) == 0);
    rk_gate_opts g = {0};
    rk_publish_opts o = {&g, NULL, 0};
    /* Publish a second version through the gate, failing its 1st, 2nd,
     * ... allocation, each time on a fresh registry so the sequence of
     * allocations is the same: every failure is a clean RK_ENOMEM, the
     * current version is 1 or 2, never anything else, everything under a
     * version number is complete, and the next writer's links agree. */
    int done = 0;
    uint64_t kp = 1;
    for (; kp < 2000 && !done; kp++) {
        char p[700];
        snprintf(p, sizeof p, "%s/ctr", dir);
        rk_test_rmdir(p);
        rk_publish_result res;
        CHECK_OK(rk_registry_open(&r, dir, NULL, &err));
        CHECK_OK(rk_registry_publish(r, &m, RK_MODEL_GBDT, "v1", 2, &o, &res,
                                     &err));
        rk_mem_fail_at(kp, 0);
        int rc = rk_registry_publish(r, &m, RK_MODEL_GBDT, "v2", 2, &o, &res,
                                     &err);
        rk_mem_fail_at(0, 0);
        if (rc && rc != RK_ENOMEM) fprintf(stderr, "  %s\n", err.msg);
        CHECK(rc == 0 || rc == RK_ENOMEM);
        done = rc == 0;
        uint32_t cur;
        CHECK_OK(rk_registry_current(r, "ctr", &cur, NULL, &err));
        CHECK(cur == 1 || cur == 2);
        CHECK(!done || (cur == 2 && res.promoted));
        CHECK_OK(rk_registry_promote(r, "ctr", cur, &err));
        CHECK(link_of(dir, "ctr", "current") == cur);
        for (uint32_t v = 1; v <= 2; v++) {
            rk_artifact a;
            snprintf(p, sizeof p, "%s/ctr/%u/model.rk", dir, v);
            if (!exists("%s%s", p, "")) continue;
            CHECK_OK(rk_artifact_read(p, &a, &err));
            rk_artifact_free(&a);
            snprintf(p, sizeof p, "%s/ctr/%u/meta.json", dir, v);
            CHECK(exists("%s%s", p, ""));
        }
        if (!done) rk_registry_close(r);
    }
    CHECK(done);
    printf("# publish succeeded after %llu injected failures\n",
           (unsigned long long)kp - 2);
    /* Listing and parsing. */
    done = 0;
    for (uint64_t k = 1; k < 400 && !done; k++) {
        rk_version_info *vi;
        size_t n;
        rk_mem_fail_at(k, 0);
        int rc = rk_registry_versions(r, "ctr", &vi, &n, &err);
        rk_mem_fail_at(0, 0);
        CHECK(rc == 0 || rc == RK_ENOMEM);
        if (rc == 0) {
            CHECK(n >= 1 && !vi[0].meta_error && vi[0].meta.nfeatures == 2);
            rk_registry_versions_free(vi, n);
            done = 1;
        }
    }
    CHECK(done);
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk_refhist_json(refs[1], &b));
    done = 0;
    for (uint64_t k = 1; k < 100 && !done; k++) {
        rk_refhist *h;
        rk_mem_fail_at(k, 0);
        int rc = rk_refhist_parse(&h, b.data, b.len, &err);
        rk_mem_fail_at(0, 0);
        CHECK(rc == 0 || rc == RK_ENOMEM);
        if (rc == 0) rk_refhist_free(h);
        done = rc == 0;
    }
    CHECK(done);
    done = 0;
    float x[50];
    uint64_t cv[50];
    for (int i = 0; i < 50; i++) {
        x[i] = (float)i;
        cv[i] = (uint64_t)(i % 4);
    }
    for (uint64_t k = 1; k < 100 && !done; k++) {
        rk_refhist *h1 = NULL, *h2 = NULL;
        rk_mem_fail_at(k, 0);
        int rc = rk_refhist_numeric(&h1, "x", x, 50, 1, 5, &err);
        if (!rc) rc = rk_refhist_categorical(&h2, "c", cv, NULL, 50, 3, &err);
        rk_mem_fail_at(0, 0);
        CHECK(rc == 0 || rc == RK_ENOMEM);
        rk_refhist_free(h1);
        rk_refhist_free(h2);
        done = rc == 0;
    }
    CHECK(done);
    rk_buf_free(&b);
    /* Promote and rollback under failures leave a consistent state. */
    done = 0;
    for (uint64_t k = 1; k < 2000 && !done; k++) {
        uint32_t before, after;
        CHECK_OK(rk_registry_current(r, "ctr", &before, NULL, &err));
        rk_mem_fail_at(k, 0);
        int rc = rk_registry_rollback(r, "ctr", NULL, &err);
        rk_mem_fail_at(0, 0);
        CHECK_OK(rk_registry_current(r, "ctr", &after, NULL, &err));
        CHECK(rc == 0 || rc == RK_ENOMEM || rc == RK_ESTATE);
        if (rc == RK_ENOMEM) CHECK(after == before);
        done = rc != RK_ENOMEM;
    }
    CHECK(done);
    rk_refhist_free(refs[0]);
    rk_refhist_free(refs[1]);
    rk_refhist_free(pred);
    rk_registry_close(r);
    rk_test_rmdir(dir);
    rk_mem_hook_libraries();
}

/* ---- fixtures for other tests ----------------------------------------------------------- */

/* With RK_MODELS_FIXTURE=<models dir>: model "ctr" with three versions
 * (1 promoted, 2 refused by the gate, 3 promoted) and "fraud" with one,
 * for tests/models_cli_test.sh. Otherwise nothing. */
TEST(cli_fixture)
{
    const char *models = getenv("RK_MODELS_FIXTURE");
    if (!models || !*models) return;
    rk_registry *r;
    rk_err err = {0};
    CHECK_OK(rk_registry_open(&r, models, NULL, &err));
    rk_model_meta m;
    rk_metric mets[5];
    rk_refhist *refs[2] = {0}, *pred = NULL;
    CHECK(full_meta(&m, mets, 0.80, refs, &pred) == 0);
    rk_gate_rule rule = {"auc", RK_METRIC_AUTO, 0.002, 0, 1};
    rk_gate_opts g = {&rule, 1, 0};
    rk_publish_opts o = {&g, NULL, 0};
    rk_publish_result res;
    const double aucs[] = {0.80, 0.79, 0.81};
    for (int i = 0; i < 3; i++) {
        mets[0].value = aucs[i];
        CHECK_OK(rk_registry_publish(r, &m, RK_MODEL_GBDT, "trees", 5, &o,
                                     &res, &err));
        printf("ctr %u: %s\n", res.version, res.reason);
    }
    m.name = "fraud";
    m.kind = NULL;
    m.nfeatures = 0;
    m.prediction = NULL;
    CHECK_OK(rk_registry_publish(r, &m, RK_MODEL_FTRL, "w", 1, NULL, &res, &err));
    rk_refhist_free(refs[0]);
    rk_refhist_free(refs[1]);
    rk_refhist_free(pred);
    rk_registry_close(r);
}

/* Seeds for fuzz/corpus/artifact/: artifacts (valid, truncated, another
 * version), meta.json documents, reference histograms and registry.json
 * files. Into $RK_ARTIFACT_WRITE_CORPUS when set, else a temporary
 * directory (so the case always runs). */
TEST(fuzz_seeds)
{
    const char *out = getenv("RK_ARTIFACT_WRITE_CORPUS");
    const char *dir = out && *out ? out : rk_test_tmpdir("art-seeds");
    char d[600], p[700];
    snprintf(d, sizeof d, "%s", dir);
    rk_err err = {0};
    rk_buf b;
    rk_buf_init(&b, 0);
    CHECK_OK(rk_artifact_encode(RK_MODEL_GBDT, "payload bytes", 13, &b));
    snprintf(p, sizeof p, "%s/artifact_gbdt.rk", d);
    CHECK(write_all(p, b.data, b.len) == 0);
    snprintf(p, sizeof p, "%s/artifact_truncated.rk", d);
    CHECK(write_all(p, b.data, b.len - 5) == 0);
    b.data[8] = 9;
    snprintf(p, sizeof p, "%s/artifact_v9.rk", d);
    CHECK(write_all(p, b.data, b.len) == 0);
    rk_buf_reset(&b);
    CHECK_OK(rk_artifact_encode(RK_MODEL_FTRL, NULL, 0, &b));
    snprintf(p, sizeof p, "%s/artifact_empty.rk", d);
    CHECK(write_all(p, b.data, b.len) == 0);

    rk_model_meta m;
    rk_metric mets[5];
    rk_refhist *refs[2] = {0}, *pred = NULL;
    CHECK(full_meta(&m, mets, 0.8, refs, &pred) == 0);
    m.version = 3;
    m.artifact = "model.rk";
    m.artifact_bytes = 45;
    m.artifact_checksum = 0xfeedull;
    rk_buf_reset(&b);
    CHECK_OK(rk_model_meta_json(&m, &b, &err));
    snprintf(p, sizeof p, "%s/meta_full.json", d);
    CHECK(write_all(p, b.data, b.len) == 0);
    const char *legacy = "{\"name\":\"ials\",\"kind\":\"ials\",\"trained_at\":"
                         "\"2026-01-02T03:04:05.000Z\",\"params\":{\"f\":16}}";
    snprintf(p, sizeof p, "%s/meta_retrieval.json", d);
    CHECK(write_all(p, legacy, strlen(legacy)) == 0);
    for (int i = 0; i < 2; i++) {
        rk_buf_reset(&b);
        CHECK_OK(rk_refhist_json(refs[i], &b));
        snprintf(p, sizeof p, "%s/refhist_%s.json", d,
                 i ? "categorical" : "numeric");
        CHECK(write_all(p, b.data, b.len) == 0);
    }
    const char *state = "{\"rankd_registry\":1,\"stack\":[1,3],\"rolled_back\":"
                        "[4],\"history\":[{\"ts\":\"2026-03-01T00:00:00.000Z\","
                        "\"action\":\"gate\",\"version\":2,\"from\":1,"
                        "\"passed\":false,\"reason\":\"gate failed\"}]}";
    snprintf(p, sizeof p, "%s/registry_state.json", d);
    CHECK(write_all(p, state, strlen(state)) == 0);
    rk_buf_free(&b);
    rk_refhist_free(refs[0]);
    rk_refhist_free(refs[1]);
    rk_refhist_free(pred);
    if (!(out && *out)) rk_test_rmdir(dir);
}

int main(int argc, char **argv)
{
    RK_TEST_MAIN(argc, argv, artifact_round_trip, artifact_every_flipped_byte,
                 artifact_truncated_and_trailing, artifact_wrong_version,
                 refhist_numeric, refhist_categorical,
                 refhist_categorical_overflow, refhist_parse_refuses,
                 meta_round_trip, meta_parse_variants, promote_and_rollback,
                 retention_keeps_current_and_previous, legacy_directory,
                 links_repaired_by_next_writer, gate_table, publish_with_gate,
                 sigkill_publish_promote, sigkill_publish_candidates,
                 sigkill_artifact_rewrite, allocation_failures, cli_fixture,
                 fuzz_seeds);
}
