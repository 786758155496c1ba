/*
 * features.c — online feature fetch and computation for one ranking
 * request of 500 candidate items, from the LMDB online store.
 *
 * Setup (not timed): a fresh store under $TMPDIR with a catalog (items
 * with a category, a title and a price; users with a country) and an
 * event log (impressions, clicks, purchases with a device in their
 * context) written through rk_feat_batch_event, so every aggregate is
 * maintained by the store's merge function as in production. Fixed seed.
 *
 * Each request draws a user, a device and 500 distinct items uniformly
 * from the catalog (a cold-ish candidate set: tail items miss the CPU
 * caches as real candidate sets do), opens a reader, and times
 *   - fetch:   rk_feat_fetch — derive every aggregate key of the request
 *              and its items (the item's category comes from its record)
 *              and look each one up in the store;
 *   - compute: rk_feat_compute_batch — everything: fetch again, read the
 *              item records, all transforms, hashing, 500 vectors.
 * Both with dense item ids given (as retrieval provides them) and, in a
 * second configuration, with external ids only (one dictionary lookup
 * more per item).
 *
 * The setup's event writes are timed too (not the catalog's): ingest
 * throughput with every aggregate merged in the event's transaction.
 *
 * A last row calibrates: the latency of one rk_reader_kv_get of a random
 * existing aggregate record, the store's floor for any fetch design that
 * reads records one by one.
 *
 * Output: one JSON line per configuration on stdout, a table on stderr.
 * Options: --requests N, --items N (catalog), --events N, --smoke.
 */
#include <errno.h>
#include <time.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rk_features.h"

#define SEED 20261122u
#define CANDIDATES 500

/* %s: the read cache's capacity (0 = LMDB only). */
static const char *const config_fmt =
    "entities:\n"
    "  item:\n"
    "    attributes: {category: categorical, title: text, price: numeric}\n"
    "  user:\n"
    "    attributes: {country: categorical}\n"
    "events:\n"
    "  impression: {role: exposure}\n"
    "  click: {role: positive, weight: 1}\n"
    "  purchase: {role: positive, weight: 10}\n"
    "features:\n"
    "  hash_bits: 22\n"
    "  state: {ttl: 30d, cache_keys: %s, cache_mb: 2048}\n"
    "  defs:\n"
    "    price: {kind: attribute, attr: price, log1p: true}\n"
    "    category: {kind: attribute, attr: category}\n"
    "    title: {kind: attribute, attr: title}\n"
    "    country: {kind: attribute, entity: user, attr: country}\n"
    "    country_x_cat: {kind: cross, of: [country, category]}\n"
    "    hour: {kind: context, field: hour}\n"
    "    weekday: {kind: context, field: weekday}\n"
    "    device: {kind: context, field: device}\n"
    "    dot: {kind: score}\n"
    "    user_clicks: {kind: counter, key: user, events: [click], half_life: 1d}\n"
    "    user_imps: {kind: counter, key: user, events: [impression],\n"
    "                windows: [1h, 1d]}\n"
    "    item_ctr: {kind: rate, key: item, num: [click], den: [impression],\n"
    "               windows: [1h, 1d, 7d], prior: {mean: 0.05, strength: 20}}\n"
    "    item_ctr_decay: {kind: rate, key: item, num: [click, purchase],\n"
    "                     den: [impression], half_life: 6h,\n"
    "                     prior: {mean: 0.05, strength: 20}}\n"
    "    item_buys: {kind: counter, key: item, events: [purchase], half_life: 7d}\n"
    "    user_cat_ctr: {kind: rate, key: [user, item.category], num: [click],\n"
    "                   den: [impression], half_life: 3d, prior: {alpha: 1, beta: 19}}\n"
    "    since_cat_click: {kind: recency, key: [user, item.category],\n"
    "                      events: [click]}\n"
    "    item_dev_imps: {kind: counter, key: [item, context.device],\n"
    "                    events: [impression], windows: [1h, 1d]}\n";

static const char *const devices[] = {"tv", "phone", "web", "tablet"};

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Power-law index in [0, n): popular ids are small. */
static uint32_t skewed(uint64_t *s, uint32_t n)
{
    double u = (double)(rng(s) >> 11) / 9007199254740992.0;
    return (uint32_t)((double)n * u * u * u);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)f;
    if (flag == FTW_DP) rmdir(p);
    else unlink(p);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* CPU time of this thread: on a shared machine wall time also counts the
 * time other processes held the core, which dwarfs a 100 us fetch. */
static uint64_t cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static double pct_us(const uint64_t *v, size_t n, double p)
{
    if (!n) return 0;
    size_t i = (size_t)(p * (double)n + 0.999999);
    if (i == 0) i = 1;
    if (i > n) i = n;
    return (double)v[i - 1] / 1e3;
}

static void die(const char *what, const rk_err *err)
{
    fprintf(stderr, "features: %s: %s\n", what, rk_err_msg(err));
    exit(1);
}

/* Catalog and event log, all writes through the store's writer; returns
 * the seconds the events took. */
static double populate(rk_store *st, rk_feat_spec *spec, uint32_t nitems,
                       uint32_t nusers, size_t nevents, int64_t t0)
{
    static const char *const words[] = {
        "red", "blue", "running", "shoes", "leather", "classic", "summer",
        "winter", "pro", "lite", "max", "organic", "cotton", "wool", "smart",
        "wireless", "kids", "travel", "vintage", "sport"};
    rk_err err = {0};
    rk_batch *b;
    if (rk_batch_create(&b, st, 0)) die("batch", &err);
    uint64_t s = SEED;
    char id[32], cat[32], title[160], country[8];
    for (uint32_t i = 0; i < nitems; i++) {
        snprintf(id, sizeof id, "item%u", i);
        snprintf(cat, sizeof cat, "cat%u", skewed(&s, 500));
        size_t o = 0;
        for (int w = 0, nw = 3 + (int)(rng(&s) % 4); w < nw; w++)
            o += (size_t)snprintf(title + o, sizeof title - o, "%s%s", w ? " " : "",
                                  words[rng(&s) % 20]);
        rk_attr_in a[3];
        memset(a, 0, sizeof a);
        a[0].name = "category";
        a[0].type = RK_ATTR_CATEGORICAL;
        a[0].str = cat;
        a[0].len = strlen(cat);
        a[1].name = "title";
        a[1].type = RK_ATTR_TEXT;
        a[1].str = title;
        a[1].len = o;
        a[2].name = "price";
        a[2].type = RK_ATTR_NUMERIC;
        a[2].num = (double)(rng(&s) % 20000) / 100;
        if (rk_batch_upsert(b, RK_ENTITY_ITEM, id, a, 3, 0, &err)) die("upsert", &err);
        if (rk_batch_count(b) >= 10000) {
            if (rk_store_write(st, b, NULL, &err)) die("write", &err);
            rk_batch_clear(b);
        }
    }
    for (uint32_t u = 0; u < nusers; u++) {
        snprintf(id, sizeof id, "user%u", u);
        snprintf(country, sizeof country, "c%u", skewed(&s, 20));
        rk_attr_in a = {0};
        a.name = "country";
        a.type = RK_ATTR_CATEGORICAL;
        a.str = country;
        a.len = strlen(country);
        if (rk_batch_upsert(b, RK_ENTITY_USER, id, &a, 1, 0, &err)) die("upsert", &err);
        if (rk_batch_count(b) >= 10000) {
            if (rk_store_write(st, b, NULL, &err)) die("write", &err);
            rk_batch_clear(b);
        }
    }
    if (rk_batch_count(b) && rk_store_write(st, b, NULL, &err)) die("write", &err);
    rk_batch_clear(b);

    rk_reader *r = NULL;
    char user[32], item[32], ctx[40];
    int64_t ts = t0;
    uint64_t start = rk_clock_mono_ns();
    for (size_t k = 0; k < nevents; k++) {
        if (!r && rk_store_reader(st, &r, &err)) die("reader", &err);
        uint32_t x = (uint32_t)(rng(&s) % 100);
        snprintf(user, sizeof user, "user%u", skewed(&s, nusers));
        snprintf(item, sizeof item, "item%u", skewed(&s, nitems));
        snprintf(ctx, sizeof ctx, "{\"device\":\"%s\"}", devices[rng(&s) % 4]);
        ts += (int64_t)(rng(&s) % 100);
        rk_event_in ev = {0};
        ev.type = x < 85 ? "impression" : x < 97 ? "click" : "purchase";
        ev.user = user;
        ev.item = item;
        ev.ts_ms = ts;
        ev.position = -1;
        ev.context = ctx;
        ev.context_len = strlen(ctx);
        if (rk_feat_batch_event(spec, b, &ev, r, &err)) die("event", &err);
        if (rk_batch_count(b) >= 20000) {
            rk_reader_close(r);
            r = NULL;
            if (rk_store_write(st, b, NULL, &err)) die("write", &err);
            rk_batch_clear(b);
        }
    }
    rk_reader_close(r);
    if (rk_batch_count(b) && rk_store_write(st, b, NULL, &err)) die("write", &err);
    rk_batch_destroy(b);
    return (double)(rk_clock_mono_ns() - start) / 1e9;
}

typedef struct result {
    double fetch50, fetch95, fetch99, comp50, comp95, comp99, found, nsparse;
    double cfetch50, cfetch99, ccomp50, ccomp99; /* thread CPU time */
} result;

static result run(rk_store *st, const rk_feat_spec *spec, uint32_t nitems,
                  uint32_t nusers, int requests, int dense, int64_t now,
                  uint64_t seed)
{
    rk_err err = {0};
    rk_feat_source *src;
    if (rk_feat_source_create(&src, spec)) die("source", &err);
    uint64_t *tf = malloc((size_t)requests * sizeof *tf);
    uint64_t *tc = malloc((size_t)requests * sizeof *tc);
    uint64_t *cf = malloc((size_t)requests * sizeof *cf);
    uint64_t *cc = malloc((size_t)requests * sizeof *cc);
    rk_feat_item *items = calloc(CANDIDATES, sizeof *items);
    char (*ids)[16] = malloc(CANDIDATES * sizeof *ids);
    float *scores = malloc(CANDIDATES * sizeof *scores);
    rk_fvec *out = calloc(CANDIDATES, sizeof *out);
    uint8_t *used = calloc(nitems, 1);
    if (!tf || !tc || !items || !ids || !scores || !out || !used) {
        fprintf(stderr, "features: out of memory\n");
        exit(1);
    }
    uint64_t s = seed;
    result res = {0};
    size_t found_sum = 0, sparse_sum = 0;
    char user[32], ctx[40];
    /* Item dense ids are assigned in upsert order: item<i> is i. */
    for (int q = 0; q < requests; q++) {
        snprintf(user, sizeof user, "user%u", skewed(&s, nusers));
        snprintf(ctx, sizeof ctx, "{\"device\":\"%s\"}", devices[rng(&s) % 4]);
        for (int i = 0; i < CANDIDATES; i++) {
            uint32_t it;
            do it = (uint32_t)(rng(&s) % nitems);
            while (used[it]);
            used[it] = 1;
            items[i].len = (size_t)snprintf(ids[i], sizeof ids[i], "item%u", it);
            items[i].id = ids[i];
            items[i].has_dense = dense;
            items[i].dense = it;
            scores[i] = (float)(rng(&s) % 1000) / 1000;
            items[i].scores = &scores[i];
        }
        for (int i = 0; i < CANDIDATES; i++) used[items[i].dense] = 0;
        rk_feat_request req = {0};
        req.user = user;
        req.user_len = strlen(user);
        req.ts_ms = now;
        req.context = ctx;
        req.context_len = strlen(ctx);
        rk_reader *r;
        if (rk_store_reader(st, &r, &err)) die("reader", &err);
        rk_feat_source_set_reader(src, r);
        size_t found = 0;
        uint64_t ca = cpu_ns(), a = rk_clock_mono_ns();
        if (rk_feat_fetch(src, &req, items, CANDIDATES, &found, &err)) die("fetch", &err);
        uint64_t b = rk_clock_mono_ns(), cb = cpu_ns();
        if (rk_feat_compute_batch(src, &req, items, CANDIDATES, out, &err))
            die("compute", &err);
        uint64_t c = rk_clock_mono_ns(), ccn = cpu_ns();
        cf[q] = cb - ca;
        cc[q] = ccn - cb;
        rk_reader_close(r);
        tf[q] = b - a;
        tc[q] = c - b;
        found_sum += found;
        for (int i = 0; i < CANDIDATES; i++) sparse_sum += out[i].nsparse;
    }
    qsort(tf, (size_t)requests, sizeof *tf, cmp_u64);
    qsort(tc, (size_t)requests, sizeof *tc, cmp_u64);
    res.fetch50 = pct_us(tf, (size_t)requests, 0.5);
    res.fetch95 = pct_us(tf, (size_t)requests, 0.95);
    res.fetch99 = pct_us(tf, (size_t)requests, 0.99);
    res.comp50 = pct_us(tc, (size_t)requests, 0.5);
    res.comp95 = pct_us(tc, (size_t)requests, 0.95);
    res.comp99 = pct_us(tc, (size_t)requests, 0.99);
    qsort(cf, (size_t)requests, sizeof *cf, cmp_u64);
    qsort(cc, (size_t)requests, sizeof *cc, cmp_u64);
    res.cfetch50 = pct_us(cf, (size_t)requests, 0.5);
    res.cfetch99 = pct_us(cf, (size_t)requests, 0.99);
    res.ccomp50 = pct_us(cc, (size_t)requests, 0.5);
    res.ccomp99 = pct_us(cc, (size_t)requests, 0.99);
    free(cf);
    free(cc);
    res.found = (double)found_sum / requests;
    res.nsparse = (double)sparse_sum / requests / CANDIDATES;
    for (int i = 0; i < CANDIDATES; i++) rk_fvec_free(&out[i]);
    free(out);
    free(used);
    free(scores);
    free(ids);
    free(items);
    free(tf);
    free(tc);
    rk_feat_source_destroy(src);
    return res;
}

typedef struct keyset {
    unsigned char (*k)[17];
    size_t n, cap;
} keyset;

static int collect_key(void *arg, const void *key, size_t klen, const void *v,
                       size_t vlen)
{
    keyset *ks = arg;
    (void)v;
    (void)vlen;
    if (klen != 17 || ks->n == ks->cap) return ks->n == ks->cap;
    memcpy(ks->k[ks->n++], key, 17);
    return 0;
}

/* Median and p99 of one random single-key lookup, in ns. */
static void kv_floor(rk_store *st, int reps, double *p50, double *p99)
{
    rk_err err = {0};
    keyset ks = {malloc((size_t)1000000 * 17), 0, 1000000};
    uint64_t *t = malloc((size_t)reps * sizeof *t);
    if (!ks.k || !t) {
        fprintf(stderr, "features: out of memory\n");
        exit(1);
    }
    rk_reader *r;
    if (rk_store_reader(st, &r, &err)) die("reader", &err);
    rk_reader_kv_scan(r, RK_KV_AGG, NULL, 0, NULL, 0, collect_key, &ks);
    uint64_t s = SEED ^ 0xf1002;
    for (int q = 0; q < reps && ks.n; q++) {
        /* 1,000 gets per sample: the clock costs more than one get. */
        uint64_t a = rk_clock_mono_ns();
        for (int i = 0; i < 1000; i++) {
            const void *v;
            size_t vl;
            rk_reader_kv_get(r, RK_KV_AGG, ks.k[rng(&s) % ks.n], 17, &v, &vl);
        }
        t[q] = (rk_clock_mono_ns() - a) / 1000;
    }
    rk_reader_close(r);
    qsort(t, (size_t)reps, sizeof *t, cmp_u64);
    *p50 = pct_us(t, (size_t)reps, 0.5) * 1e3;
    *p99 = pct_us(t, (size_t)reps, 0.99) * 1e3;
    free(t);
    free(ks.k);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n values (sorts them). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: features [--smoke] [--requests N] [--items N] [--events N]\n"
               "                [--path lmdb|cache_cold|cache_warm] [--rounds N]\n"
               "  --requests N  timed requests of 500 items per configuration (2000)\n"
               "  --items N     catalog size (100000)\n"
               "  --events N    events written before timing (1000000)\n"
               "  --path P      time only read path P: lmdb, cache_cold or cache_warm\n"
               "  --rounds N    time the warm path N times over (1; the summary line\n"
               "                gives the median of the rounds' CPU p50s)\n"
               "  --smoke       tiny run of every code path (make test)\n");
}

int main(int argc, char **argv)
{
    int smoke = 0, requests = 2000, rounds = 1;
    const char *only = NULL; /* --path: profile one read path */
    long items = 100000, events = 1000000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--smoke")) smoke = 1;
        else if (!strcmp(argv[i], "--requests") && i + 1 < argc) requests = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--items") && i + 1 < argc) items = atol(argv[++i]);
        else if (!strcmp(argv[i], "--events") && i + 1 < argc) events = atol(argv[++i]);
        else if (!strcmp(argv[i], "--path") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else {
            usage(strcmp(argv[i], "--help") ? stderr : stdout);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (smoke) {
        requests = 20;
        items = 2000;
        events = 20000;
    }
    if (requests < 1 || items < CANDIDATES || events < 0 || rounds < 1 || rounds > 100) {
        usage(stderr);
        return 2;
    }
    uint32_t nitems = (uint32_t)items, nusers = (uint32_t)(items / 5 + 1);
    char root[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/rankd-bench-features-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        fprintf(stderr, "features: mkdtemp %s: %s\n", root, strerror(errno));
        return 1;
    }
    rk_err err = {0};
    rk_conf *conf;
    rk_schema *schema;
    rk_feat_spec *spec;
    rk_store *st;
    /* Two specs of the same definition (same schema hash): one attached
     * with the read cache, one without it for the LMDB-only runs. */
    char config[4096], config0[4096];
    snprintf(config, sizeof config, config_fmt, "2000000");
    snprintf(config0, sizeof config0, config_fmt, "0");
    rk_conf *conf0;
    rk_feat_spec *spec0;
    if (rk_conf_parse_yaml(&conf, config, strlen(config), "bench", &err) ||
        rk_conf_parse_yaml(&conf0, config0, strlen(config0), "bench", &err) ||
        rk_schema_from_conf(&schema, rk_conf_root(conf), &err) ||
        rk_feat_spec_from_conf(&spec, rk_conf_root(conf), schema, &err) ||
        rk_feat_spec_from_conf(&spec0, rk_conf_root(conf0), schema, &err))
        die("config", &err);
    rk_store_opts o;
    rk_store_opts_default(&o);
    o.path = root;
    o.map_size = (uint64_t)8 << 30;
    if (rk_store_open(&st, &o, schema, &err) || rk_feat_attach(spec, st, &err))
        die("open", &err);
    int64_t t0 = rk_civil_ms(2026, 11, 1);
    uint64_t a = rk_clock_mono_ns();
    double evsec = populate(st, spec, nitems, nusers, (size_t)events, t0);
    double setup = (double)(rk_clock_mono_ns() - a) / 1e9;
    rk_feat_online_stats os;
    rk_feat_online_stats_get(spec, &os);
    printf("{\"bench\":\"features\",\"measure\":\"ingest\",\"events\":%ld,"
           "\"seconds\":%.3f,\"events_per_sec\":%.0f,\"merges_per_event\":%.2f,"
           "\"records\":%llu,\"batch_ops\":20000,\"smoke\":%s}\n",
           events, evsec, events / (evsec > 0 ? evsec : 1e-9),
           events ? (double)os.merges / events : 0, (unsigned long long)os.created,
           smoke ? "true" : "false");
    int64_t now = t0 + events * 50 + 3600000;

    fprintf(stderr, "features: %u items, %u users, %ld events (%llu aggregate "
            "records, %.1f merges per event) written in %.1fs (events: %.0f/s); "
            "%d requests of %d items\n",
            nitems, nusers, events, (unsigned long long)os.created,
            events ? (double)os.merges / events : 0, setup,
            events / (evsec > 0 ? evsec : 1e-9), requests, CANDIDATES);
    fprintf(stderr, "%-12s %-9s %9s %9s %9s %9s %9s %9s %9s %9s %6s\n", "read path",
            "item ids", "fetch p50", "p95", "p99", "all p50", "p99", "cpu fetch",
            "p99", "cpu all", "keys");
    /* LMDB only; the cache cold (a fresh cache, the first requests: most
     * keys are read from LMDB and filled); the cache warm (every key of the
     * catalog and the timed requests' keys cached by an untimed pass over
     * them first, then the LMDB-only runs' requests again). */
    enum { LMDB, COLD, WARM };
    static const char *const paths[] = {"lmdb", "cache_cold", "cache_warm"};
    rk_feat_cache_stats cs = {0};
    double wp50[2][100], wp99[2][100]; /* warm fetch CPU p50/p99 per round */
    for (int path = LMDB; path <= WARM; path++) {
        if (path == COLD) {
            rk_feat_detach(spec, st); /* drops the cache; attach makes a new one */
            if (rk_feat_attach(spec, st, &err)) die("attach", &err);
        }
        if (path == WARM) {
            /* Warm-up: fetch every item once, then the timed runs. */
            rk_feat_source *w;
            rk_reader *r;
            if (rk_feat_source_create(&w, spec) || rk_store_reader(st, &r, &err))
                die("warm-up", &err);
            rk_feat_source_set_reader(w, r);
            rk_feat_item *it = calloc(CANDIDATES, sizeof *it);
            char (*wid)[16] = malloc(CANDIDATES * sizeof *wid);
            if (!it || !wid) die("warm-up", &err);
            for (uint32_t u = 0; u < nusers; u += 64) {
                char user[32];
                snprintf(user, sizeof user, "user%u", u);
                rk_feat_request req = {user, strlen(user), now, NULL, 0, NULL, 0, NULL};
                rk_feat_fetch(w, &req, NULL, 0, NULL, &err);
            }
            for (uint32_t i0 = 0; i0 < nitems; i0 += CANDIDATES) {
                size_t n = 0;
                for (uint32_t i = i0; i < nitems && n < CANDIDATES; i++, n++) {
                    it[n].len = (size_t)snprintf(wid[n], sizeof wid[n], "item%u", i);
                    it[n].id = wid[n];
                }
                for (int d = 0; d < 4; d++) {
                    char ctx[40], user[32];
                    snprintf(ctx, sizeof ctx, "{\"device\":\"%s\"}", devices[d]);
                    snprintf(user, sizeof user, "user%u", i0 % nusers);
                    rk_feat_request req = {user, strlen(user), now, ctx, strlen(ctx),
                                           NULL, 0, NULL};
                    if (rk_feat_fetch(w, &req, it, n, NULL, &err)) die("warm-up", &err);
                }
            }
            free(it);
            free(wid);
            rk_reader_close(r);
            rk_feat_source_destroy(w);
            /* ...and the timed requests once, untimed: their users' keys
             * (user x category, absent ones included) are cached too. */
            (void)run(st, spec, nitems, nusers, requests, 1, now, SEED ^ 0x5eed);
        }
        for (int round = 0; round < (path == WARM ? rounds : 1); round++)
        for (int dense = 1; dense >= 0; dense--) {
            if (only && strcmp(only, paths[path])) continue;
            /* Cold: few requests, so that most of their keys are first
             * reads (a fresh cache per item-id mode). */
            int nreq = path == COLD ? (requests < 100 ? requests : 100) : requests;
            if (path == COLD && !dense) {
                rk_feat_detach(spec, st);
                if (rk_feat_attach(spec, st, &err)) die("attach", &err);
            }
            uint64_t seed = SEED ^ 0x5eed ^ (path == COLD ? 0xc01d : 0);
            result r = run(st, path == LMDB ? spec0 : spec, nitems, nusers, nreq, dense,
                           now, seed);
            rk_feat_cache_stats_get(spec, &cs);
            printf("{\"bench\":\"features\",\"path\":\"%s\",\"items\":%d,"
                   "\"item_ids\":\"%s\",\"requests\":%d,\"catalog\":%u,\"events\":%ld,"
                   "\"ndense\":%u,\"fetch_p50_us\":%.1f,\"fetch_p95_us\":%.1f,"
                   "\"fetch_p99_us\":%.1f,\"compute_p50_us\":%.1f,"
                   "\"compute_p95_us\":%.1f,\"compute_p99_us\":%.1f,\"keys_found\":%.1f,"
                   "\"sparse_per_item\":%.1f,\"fetch_cpu_p50_us\":%.1f,\"fetch_cpu_p99_us\":%.1f,"
                   "\"compute_cpu_p50_us\":%.1f,\"compute_cpu_p99_us\":%.1f,\"cache_entries\":%zu,\"cache_bytes\":%zu,"
                   "\"cache_hits\":%llu,\"cache_misses\":%llu,\"round\":%d,\"smoke\":%s}\n",
                   paths[path], CANDIDATES, dense ? "dense" : "external", nreq, nitems,
                   events, rk_feat_ndense(spec), r.fetch50, r.fetch95, r.fetch99, r.comp50,
                   r.comp95, r.comp99, r.found, r.nsparse, r.cfetch50, r.cfetch99,
                   r.ccomp50, r.ccomp99,
                   path == LMDB ? (size_t)0 : cs.entries, path == LMDB ? (size_t)0 : cs.bytes,
                   path == LMDB ? 0ull : (unsigned long long)cs.hits,
                   path == LMDB ? 0ull : (unsigned long long)cs.misses, round + 1,
                   smoke ? "true" : "false");
            if (path == WARM) {
                wp50[dense][round] = r.cfetch50;
                wp99[dense][round] = r.cfetch99;
            }
            char label[32];
            snprintf(label, sizeof label, path == WARM && rounds > 1 ? "%s#%d" : "%s",
                     paths[path], round + 1);
            fprintf(stderr, "%-12s %-9s %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %6.0f\n",
                    label, dense ? "dense" : "external", r.fetch50, r.fetch95,
                    r.fetch99, r.comp50, r.comp99, r.cfetch50, r.cfetch99, r.ccomp50,
                    r.found);
        }
    }
    if (!only || !strcmp(only, "cache_warm"))
        for (int dense = 1; dense >= 0; dense--) {
            double m50 = median(wp50[dense], rounds), m99 = median(wp99[dense], rounds);
            printf("{\"bench\":\"features\",\"measure\":\"warm_fetch\",\"item_ids\":\"%s\","
                   "\"rounds\":%d,\"fetch_cpu_p50_us_median\":%.1f,"
                   "\"fetch_cpu_p99_us_median\":%.1f,\"target_us\":100,\"smoke\":%s}\n",
                   dense ? "dense" : "external", rounds, m50, m99, smoke ? "true" : "false");
            fprintf(stderr, "warm fetch, %s ids: CPU p50 %.1f us, p99 %.1f us (medians of %d "
                    "round%s; target 100 us)\n", dense ? "dense" : "external", m50, m99, rounds,
                    rounds == 1 ? "" : "s");
        }
    printf("{\"bench\":\"features\",\"measure\":\"cache\",\"entries\":%zu,"
           "\"max_entries\":%zu,\"value_bytes\":%zu,\"bytes\":%zu,\"hits\":%llu,"
           "\"misses\":%llu,\"evictions\":%llu,\"smoke\":%s}\n",
           cs.entries, cs.max_entries, cs.value_bytes, cs.bytes,
           (unsigned long long)cs.hits, (unsigned long long)cs.misses,
           (unsigned long long)cs.evictions, smoke ? "true" : "false");
    fprintf(stderr, "cache after the warm runs: %zu entries (max %zu), %.1f MiB of "
            "values, %.1f MiB in all; %llu hits, %llu misses, %llu evictions\n",
            cs.entries, cs.max_entries, cs.value_bytes / 1048576.0, cs.bytes / 1048576.0,
            (unsigned long long)cs.hits, (unsigned long long)cs.misses,
            (unsigned long long)cs.evictions);
    /* Huge pages backing the process (the cache's slot tables ask for
     * them; without them every probe also misses the TLB). */
    FILE *sm = fopen("/proc/self/smaps_rollup", "r");
    char line[128];
    long huge_kb = -1;
    while (sm && fgets(line, sizeof line, sm))
        if (sscanf(line, "AnonHugePages: %ld kB", &huge_kb) == 1) break;
    if (sm) fclose(sm);
    fprintf(stderr, "anonymous huge pages: %ld MiB\n", huge_kb < 0 ? -1 : huge_kb / 1024);
    double g50, g99;
    kv_floor(st, smoke ? 10 : 200, &g50, &g99);
    printf("{\"bench\":\"features\",\"measure\":\"kv_get\",\"records\":%llu,"
           "\"get_p50_ns\":%.0f,\"get_p99_ns\":%.0f,\"smoke\":%s}\n",
           (unsigned long long)os.created, g50, g99, smoke ? "true" : "false");
    fprintf(stderr, "one random rk_reader_kv_get of %llu records: p50 %.0f ns, "
            "p99 %.0f ns (means of 1,000 gets)\n", (unsigned long long)os.created,
            g50, g99);
    fflush(stdout);
    rk_feat_detach(spec, st);
    rk_store_close(st);
    rk_feat_spec_destroy(spec);
    rk_feat_spec_destroy(spec0);
    rk_schema_destroy(schema);
    rk_conf_destroy(conf);
    rk_conf_destroy(conf0);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
