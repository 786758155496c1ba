/*
 * demo.c — `rankd demo`: a self-contained first run.
 *
 * Generates a small synthetic video platform with a fixed seed — items with
 * categories, tags, durations and power-law popularity; users with a taste
 * for two categories; sessions of impressions with position-biased clicks,
 * watch time and likes — writes it as the files a user would have (a
 * config, items.jsonl, users.csv, events.csv), imports them through the
 * normal import path into a fresh data directory, and prints a summary read
 * back from the store. Needs nothing but the rankd binary.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "rk_sim.h"

/* The simulator's vocabulary (rk_sim_vocabulary); the demo uses its first
 * NCAT categories. */
#define NCAT 12
/* xorshift64*: small, fast and the same on every platform. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}

static double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

static uint32_t rng_below(rng *r, uint32_t n)
{
    return (uint32_t)(rng_unit(r) * n);
}

typedef struct demo_item {
    uint32_t cat;
    double duration;  /* seconds */
    double quality;   /* latent appeal in [0,1] */
} demo_item;

typedef struct demo_opts {
    const char *dir;
    uint32_t users, items, sessions;
    uint64_t seed;
} demo_opts;

/* Samples an item index by popularity: the cumulative weights of a Zipf
 * law with exponent 1.1 over a random permutation of the catalog. */
static uint32_t pick_popular(rng *r, const double *cdf, uint32_t n)
{
    double u = rng_unit(r) * cdf[n - 1];
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cdf[mid] < u) lo = mid + 1; else hi = mid;
    }
    return lo;
}

static int write_config(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int bad = fputs("# rankd demo configuration (written by `rankd demo`)\n", f) < 0 ||
              rk_sim_write_schema(f) || fputs("log:\n  level: warn\n", f) < 0;
    return fclose(f) || bad ? -1 : 0;
}

/* Generates the three input files; returns 0 or -1 (errno set). */
static int generate(const demo_opts *o, const char *in_dir, demo_item *items,
                    double *cdf)
{
    char path[4096];
    const rk_sim_vocab *v = rk_sim_vocabulary();
    rng r = {o->seed * 0x9E3779B97F4A7C15ULL + 1};
    const int64_t t0 = 1767225600000LL; /* 2026-01-01T00:00:00Z */

    snprintf(path, sizeof path, "%s/items.jsonl", in_dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    for (uint32_t i = 0; i < o->items; i++) {
        demo_item *it = &items[i];
        it->cat = rng_below(&r, NCAT);
        it->duration = 30 + floor(-log(1 - rng_unit(&r)) * 400);
        it->quality = rng_unit(&r);
        int64_t published = t0 - (int64_t)rng_below(&r, 90) * 86400000LL;
        char pub[32];
        rk_format_time_ms(published, pub);
        uint32_t t1 = rng_below(&r, v->ntags);
        uint32_t t2 = (t1 + 1 + rng_below(&r, v->ntags - 1)) % v->ntags;
        fprintf(f, "{\"id\":\"v%u\",\"attributes\":{\"title\":\"%s %s #%u\","
                   "\"category\":\"%s\",\"tags\":[\"%s\",\"%s\"],"
                   "\"duration\":%.0f,\"published\":\"%s\"}}\n",
                i, v->adjectives[rng_below(&r, v->nadjectives)],
                v->nouns[rng_below(&r, v->nnouns)], i, v->categories[it->cat],
                v->tags[t1], v->tags[t2], it->duration, pub);
    }
    if (fclose(f)) return -1;

    /* Popularity: Zipf over a shuffled order so ids carry no rank. */
    uint32_t *perm = rk_malloc(sizeof(uint32_t) * o->items);
    if (!perm) return -1;
    for (uint32_t i = 0; i < o->items; i++) perm[i] = i;
    for (uint32_t i = o->items - 1; i > 0; i--) {
        uint32_t j = rng_below(&r, i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    double acc = 0;
    for (uint32_t k = 0; k < o->items; k++) {
        acc += 1.0 / pow(k + 1, 1.1);
        cdf[k] = acc;
    }

    snprintf(path, sizeof path, "%s/users.csv", in_dir);
    if (!(f = fopen(path, "w"))) {
        rk_free(perm);
        return -1;
    }
    fputs("id,country,age\n", f);
    uint32_t *taste = rk_malloc(sizeof(uint32_t) * 2 * o->users);
    if (!taste) {
        fclose(f);
        rk_free(perm);
        return -1;
    }
    for (uint32_t u = 0; u < o->users; u++) {
        taste[2 * u] = rng_below(&r, NCAT);
        taste[2 * u + 1] = rng_below(&r, NCAT);
        fprintf(f, "u%u,%s,%u\n", u, v->countries[rng_below(&r, v->ncountries)],
                13 + rng_below(&r, 58));
    }
    int rc = fclose(f);

    snprintf(path, sizeof path, "%s/events.csv", in_dir);
    if (rc || !(f = fopen(path, "w"))) {
        rk_free(taste);
        rk_free(perm);
        return -1;
    }
    fputs("id,type,user,item,ts,value,request_id,position\n", f);
    uint64_t ev = 0;
    for (uint32_t s = 0; s < o->sessions; s++) {
        uint32_t u = rng_below(&r, o->users);
        int64_t ts = t0 + (int64_t)(rng_unit(&r) * 7 * 86400000.0);
        uint32_t shown = 5 + rng_below(&r, 6);
        for (uint32_t pos = 0; pos < shown; pos++) {
            /* Half the slate follows the user's taste, half popularity. */
            uint32_t i = perm[pick_popular(&r, cdf, o->items)];
            if (rng_unit(&r) < 0.5) {
                uint32_t want = taste[2 * u + rng_below(&r, 2)];
                for (int tries = 0; tries < 20 && items[i].cat != want; tries++)
                    i = perm[pick_popular(&r, cdf, o->items)];
            }
            int64_t t = ts + pos * 1000;
            fprintf(f, "d%llu,impression,u%u,v%u,%lld,,s%u,%u\n",
                    (unsigned long long)ev++, u, i, (long long)t, s, pos);
            int likes = items[i].cat == taste[2 * u] ||
                        items[i].cat == taste[2 * u + 1];
            double p = (likes ? 0.25 : 0.03) * (0.5 + items[i].quality) /
                       (1.0 + 0.3 * pos);
            if (rng_unit(&r) >= p) continue;
            fprintf(f, "d%llu,click,u%u,v%u,%lld,,s%u,%u\n",
                    (unsigned long long)ev++, u, i, (long long)t + 500, s, pos);
            double frac = likes ? 0.4 + 0.6 * rng_unit(&r) : 0.1 + 0.3 * rng_unit(&r);
            fprintf(f, "d%llu,watch,u%u,v%u,%lld,%.1f,s%u,%u\n",
                    (unsigned long long)ev++, u, i,
                    (long long)t + 500 + (int64_t)(frac * items[i].duration * 1000),
                    frac * items[i].duration, s, pos);
            if (frac > 0.8 && rng_unit(&r) < 0.3)
                fprintf(f, "d%llu,like,u%u,v%u,%lld,,s%u,%u\n",
                        (unsigned long long)ev++, u, i, (long long)t + 900, s,
                        pos);
        }
    }
    rk_free(taste);
    rk_free(perm);
    return fclose(f);
}

/* Summary read back from the store: events per type and clicks per item. */
typedef struct summary {
    uint64_t per_type[RK_MAX_EVENT_TYPES];
    uint32_t *clicks;
    uint32_t nitems;
    uint32_t click_type, impression_type;
    double watch_sum;
    uint32_t watch_type;
} summary;

static int summarise_event(void *arg, const rk_event *e)
{
    summary *s = arg;
    if (e->type < RK_MAX_EVENT_TYPES) s->per_type[e->type]++;
    if (e->type == s->click_type && e->item < s->nitems) s->clicks[e->item]++;
    if (e->type == s->watch_type && e->has_value) s->watch_sum += e->value;
    return 0;
}

static int print_summary(rk_store *st)
{
    rk_reader *r;
    rk_err err = {0};
    rk_store_stats ss;
    if (rk_store_reader(st, &r, &err) || rk_reader_stats(r, &ss)) {
        cli_printf_err("%s", rk_err_msg(&err));
        return 1;
    }
    const rk_schema *sc = rk_store_schema(st);
    summary s = {0};
    s.nitems = (uint32_t)ss.ids[RK_ENTITY_ITEM];
    s.clicks = rk_calloc(s.nitems + 1, sizeof(uint32_t));
    rk_schema_find_event_type(sc, "click", 5, &s.click_type);
    rk_schema_find_event_type(sc, "impression", 10, &s.impression_type);
    rk_schema_find_event_type(sc, "watch", 5, &s.watch_type);
    int rc = s.clicks ? rk_reader_scan_events(r, 0, summarise_event, &s)
                      : RK_ENOMEM;
    if (rc) {
        cli_printf_err("summary: %s", rc == RK_ENOMEM ? "out of memory"
                                                      : rk_reader_errmsg(r));
        rk_free(s.clicks);
        rk_reader_close(r);
        return 1;
    }
    printf("\nstore summary\n");
    printf("  users     %llu\n", (unsigned long long)ss.ids[RK_ENTITY_USER]);
    printf("  items     %llu\n", (unsigned long long)ss.ids[RK_ENTITY_ITEM]);
    printf("  events    %llu\n", (unsigned long long)ss.events);
    for (uint32_t t = 0; t < rk_schema_nevent_types(sc); t++)
        if (s.per_type[t])
            printf("    %-10s %llu\n", rk_schema_event_type(sc, t)->name,
                   (unsigned long long)s.per_type[t]);
    uint64_t imp = s.per_type[s.impression_type], clk = s.per_type[s.click_type];
    if (imp) printf("  CTR       %.2f%%\n", 100.0 * (double)clk / (double)imp);
    if (s.per_type[s.watch_type])
        printf("  mean watch %.1f s\n",
               s.watch_sum / (double)s.per_type[s.watch_type]);
    printf("  disk      %.1f MiB\n", (double)ss.bytes / (1 << 20));
    printf("\nmost clicked items\n");
    uint32_t title_attr = 0, cat_attr = 0;
    int has_title = rk_schema_find_attr(sc, RK_ENTITY_ITEM, "title", 5,
                                        &title_attr) == 0;
    int has_cat = rk_schema_find_attr(sc, RK_ENTITY_ITEM, "category", 8,
                                      &cat_attr) == 0;
    for (int k = 0; k < 5; k++) {
        uint32_t best = UINT32_MAX;
        for (uint32_t i = 0; i < s.nitems; i++)
            if (s.clicks[i] && (best == UINT32_MAX || s.clicks[i] > s.clicks[best]))
                best = i;
        if (best == UINT32_MAX) break;
        const char *ext = "?";
        size_t len = 1;
        rk_reader_external(r, RK_ENTITY_ITEM, best, &ext, &len);
        printf("  %-6.*s %5u clicks", (int)len, ext, s.clicks[best]);
        rk_entity_view v;
        if (rk_reader_entity(r, RK_ENTITY_ITEM, best, &v) == 0)
            for (uint32_t a = 0; a < v.nattrs; a++) {
                const rk_attr_val *av = &v.attrs[a];
                if ((has_title && av->attr == title_attr) ||
                    (has_cat && av->attr == cat_attr))
                    printf("  %.*s", (int)av->len, av->str);
            }
        printf("\n");
        s.clicks[best] = 0;
    }
    rk_free(s.clicks);
    rk_reader_close(r);
    return 0;
}

static const char demo_usage[] =
    "usage: rankd demo [--data DIR] [--users N] [--items N] [--sessions N]\n"
    "                  [--seed N]\n"
    "Writes DIR/rankd.yaml and DIR/input/{items.jsonl,users.csv,events.csv},\n"
    "imports them into the store in DIR and prints a summary. DIR defaults\n"
    "to ./rankd-demo and must be new or empty of rankd data.\n";

int cli_demo(int argc, char **argv)
{
    demo_opts o = {"rankd-demo", 1000, 5000, 20000, 42};
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        uint64_t n;
        if ((r = cli_opt("--data", argc, argv, &i, &o.dir))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt("--users", argc, argv, &i, &v))) {
            if (r < 0 || cli_uint("--users", v, 10000000, &n)) return 2;
            o.users = (uint32_t)n;
        } else if ((r = cli_opt("--items", argc, argv, &i, &v))) {
            if (r < 0 || cli_uint("--items", v, 10000000, &n)) return 2;
            o.items = (uint32_t)n;
        } else if ((r = cli_opt("--sessions", argc, argv, &i, &v))) {
            if (r < 0 || cli_uint("--sessions", v, 100000000, &n)) return 2;
            o.sessions = (uint32_t)n;
        } else if ((r = cli_opt("--seed", argc, argv, &i, &v))) {
            if (r < 0 || cli_uint("--seed", v, UINT64_MAX, &n)) return 2;
            o.seed = n;
        } else if (strcmp(argv[i], "--help") == 0) {
            fputs(demo_usage, stdout);
            return 0;
        } else {
            cli_printf_err("demo: unexpected '%s'\n%s", argv[i], demo_usage);
            return 2;
        }
    }
    char path[4096], in_dir[4096], conf_path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", o.dir);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        cli_printf_err("demo: %s already holds a store; pass a new --data "
                       "directory (or remove it)", o.dir);
        return 1;
    }
    snprintf(in_dir, sizeof in_dir, "%s/input", o.dir);
    snprintf(conf_path, sizeof conf_path, "%s/rankd.yaml", o.dir);
    if ((mkdir(o.dir, 0755) && errno != EEXIST) ||
        (mkdir(in_dir, 0755) && errno != EEXIST)) {
        cli_printf_err("demo: cannot create %s: %s", in_dir, strerror(errno));
        return 1;
    }
    printf("rankd demo: %u users, %u items, %u sessions (seed %llu) in %s\n",
           o.users, o.items, o.sessions, (unsigned long long)o.seed, o.dir);
    demo_item *items = rk_calloc(o.items, sizeof *items);
    double *cdf = rk_calloc(o.items, sizeof *cdf);
    int rc = (!items || !cdf) ? -1 : 0;
    if (!rc) rc = write_config(conf_path);
    if (!rc) rc = generate(&o, in_dir, items, cdf);
    rk_free(items);
    rk_free(cdf);
    if (rc) {
        cli_printf_err("demo: writing input files: %s", strerror(errno));
        return 1;
    }
    printf("wrote %s and %s/{items.jsonl,users.csv,events.csv}\n\n", conf_path,
           in_dir);

    /* Import exactly as a user would: `rankd import --config ... FILE`. */
    cli_common c = {.config = conf_path, .data = o.dir};
    cli_env env;
    if ((rc = cli_env_load(&env, &c))) return rc;
    rk_store *st;
    if (cli_open_store(&env, 0, &st)) {
        cli_env_free(&env);
        return 1;
    }
    static const struct {
        const char *file;
        rk_import_kind kind;
    } inputs[] = {{"items.jsonl", RK_KIND_ITEMS},
                  {"users.csv", RK_KIND_USERS},
                  {"events.csv", RK_KIND_EVENTS}};
    rk_err err = {0};
    for (size_t k = 0; k < 3 && rc == 0; k++) {
        rk_import_opts io;
        rk_import_opts_default(&io);
        io.kind = inputs[k].kind;
        io.progress = 1;
        io.log = &env.log;
        rk_import_stats is;
        snprintf(path, sizeof path, "%s/%s", in_dir, inputs[k].file);
        rc = rk_import_file(st, path, &io, &is, &err);
        printf("imported %-12s %8llu records, %llu rejected, %.2f s "
               "(%.0f records/s)\n",
               inputs[k].file, (unsigned long long)is.records,
               (unsigned long long)is.rejected, is.seconds,
               is.records_per_sec);
        if (rc) cli_printf_err("%s", rk_err_msg(&err));
    }
    if (!rc && (rc = rk_store_sync(st, &err)))
        cli_printf_err("%s", rk_err_msg(&err));
    if (!rc) rc = print_summary(st);
    rk_store_close(st);
    cli_env_free(&env);
    if (!rc)
        printf("\nnext: rankd stats --data %s; rankd export events --data %s "
               "| head\n", o.dir, o.dir);
    return rc ? 1 : 0;
}
