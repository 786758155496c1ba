/*
 * mind.c — Microsoft News Dataset (MIND): behaviors.tsv and news.tsv.
 *
 * A behaviors line `impression_id user time history impressions` becomes:
 *  - for each shown item "N123-0|1" at list index i: an "impression" event
 *    (position i, request_id "mind-<impression_id>", id
 *    "mind:<impression_id>:<news>:imp") and, when the label is 1, a "click"
 *    event with the same time, position and request id (id "...:click");
 *    a token without "-0"/"-1" (the unlabelled test format) gives the
 *    impression only;
 *  - for each history item: a "click" event at the impression time minus
 *    1 ms with context {"source":"history"} and id "mind:h:<user>:<news>".
 *    History has no timestamps of its own and is repeated on every
 *    impression of a user, so the id makes it count once per user and the
 *    time is an upper bound on when the click happened: it precedes the
 *    first impression of this user that the import sees.
 * A news line becomes an item with category and subcategory
 * (categorical), title and abstract (text) and entities (categorical_list
 * of the WikidataIds annotated in the title and abstract).
 */
#include <jansson.h>
#include <string.h>

#include "io_int.h"

static const char history_ctx[] = "{\"source\":\"history\"}";

static size_t count_tokens(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && s[i] == ' ') i++;
        if (i == n) break;
        k++;
        while (i < n && s[i] != ' ') i++;
    }
    return k;
}

static int behaviors(rk_io_parser *p, rk_io_record *out, rk_err *err)
{
    rk_csv *c = &p->csv;
    if (c->n != 5)
        return rk_err_set(err, RK_EPARSE,
                          "expected 5 tab-separated fields (impression_id, "
                          "user, time, history, impressions), got %zu",
                          c->n);
    const char *impid, *user;
    int64_t ts;
    int rc;
    if ((rc = rk__io_id(p, "impression_id", c->f[0], c->len[0], &impid, err)) ||
        (rc = rk__io_id(p, "user", c->f[1], c->len[1], &user, err)) ||
        (rc = rk__io_time("time", c->f[2], c->len[2], &ts, err)))
        return rc;
    if (ts < 1)
        return rk_err_set(err, RK_EPARSE, "column 'time': before 1970");
    size_t nh = count_tokens(c->f[3], c->len[3]);
    size_t ni = count_tokens(c->f[4], c->len[4]);
    if (ni == 0)
        return rk_err_set(err, RK_EPARSE, "column 'impressions': empty");
    rk_event_in *ev = rk_arena_alloc(&p->arena, (nh + 2 * ni) * sizeof *ev);
    if (!ev) return rk_err_set(err, RK_ENOMEM, "mind: out of memory");
    const char *reqid;
    const char *hprefix, *iprefix;
    if ((rc = rk__io_cat(p, &hprefix, err, "mind:h:", user, ":", NULL)) ||
        (rc = rk__io_cat(p, &iprefix, err, "mind:", impid, ":", NULL)) ||
        (rc = rk__io_cat(p, &reqid, err, "mind-", impid, NULL, NULL)))
        return rc;
    size_t ne = 0;

    const char *s = c->f[3];
    size_t n = c->len[3];
    for (size_t i = 0; i < n;) {
        while (i < n && s[i] == ' ') i++;
        if (i == n) break;
        size_t j = i;
        while (j < n && s[j] != ' ') j++;
        rk_event_in *e = &ev[ne++];
        memset(e, 0, sizeof *e);
        e->type = "click";
        e->user = user;
        e->ts_ms = ts - 1;
        e->position = -1;
        e->context = history_ctx;
        e->context_len = sizeof history_ctx - 1;
        if ((rc = rk__io_id(p, "history", s + i, j - i, &e->item, err)) ||
            (rc = rk__io_cat(p, &e->id, err, hprefix, e->item, NULL, NULL)))
            return rc;
        i = j;
    }

    s = c->f[4];
    n = c->len[4];
    int32_t pos = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && s[i] == ' ') i++;
        if (i == n) break;
        size_t j = i;
        while (j < n && s[j] != ' ') j++;
        size_t tn = j - i;
        int label = -1;
        if (tn >= 3 && s[j - 2] == '-' && (s[j - 1] == '0' || s[j - 1] == '1')) {
            label = s[j - 1] - '0';
            tn -= 2;
        }
        rk_event_in *e = &ev[ne++];
        memset(e, 0, sizeof *e);
        e->type = "impression";
        e->user = user;
        e->ts_ms = ts;
        e->position = pos++;
        e->request_id = reqid;
        if ((rc = rk__io_id(p, "impressions", s + i, tn, &e->item, err)) ||
            (rc = rk__io_cat(p, &e->id, err, iprefix, e->item, ":imp", NULL)))
            return rc;
        if (label == 1) {
            rk_event_in *k = &ev[ne++];
            *k = *e;
            k->type = "click";
            if ((rc = rk__io_cat(p, &k->id, err, iprefix, e->item, ":click",
                                NULL)))
                return rc;
        }
        i = j;
    }
    out->type = RK_IO_REC_EVENTS;
    out->events = ev;
    out->nevents = ne;
    return 0;
}

/* Appends the WikidataIds of a MIND entity list ("[]", "" or a JSON array
 * of objects) to ids, skipping ones already there. */
static int entities(rk_io_parser *p, const char *col, const char *s, size_t n,
                    const char **ids, size_t *lens, size_t *nids, size_t max,
                    rk_err *err)
{
    if (n == 0) return 0;
    json_error_t jerr;
    json_t *j = json_loadb(s, n, 0, &jerr);
    if (!j || !json_is_array(j)) {
        json_decref(j);
        return rk_err_set(err, RK_EPARSE, "column '%s': not a JSON array%s%s",
                          col, j ? "" : ": ", j ? "" : jerr.text);
    }
    int rc = 0;
    size_t i;
    json_t *el;
    json_array_foreach(j, i, el) {
        json_t *w = json_object_get(el, "WikidataId");
        if (!json_is_string(w)) continue;
        const char *v = json_string_value(w);
        size_t vn = json_string_length(w);
        if (vn == 0) continue;
        int seen = 0;
        for (size_t k = 0; k < *nids && !seen; k++)
            seen = lens[k] == vn && memcmp(ids[k], v, vn) == 0;
        if (seen || *nids == max) continue;
        if ((rc = rk__io_id(p, col, v, vn, &ids[*nids], err))) break;
        lens[(*nids)++] = vn;
    }
    json_decref(j);
    return rc;
}

static int news(rk_io_parser *p, rk_io_record *out, rk_err *err)
{
    rk_csv *c = &p->csv;
    if (c->n != 8)
        return rk_err_set(err, RK_EPARSE,
                          "expected 8 tab-separated fields (news_id, "
                          "category, subcategory, title, abstract, url, "
                          "title_entities, abstract_entities), got %zu",
                          c->n);
    rk_io_entity *e = &out->entity;
    e->entity = RK_ENTITY_ITEM;
    e->hidden = -1;
    int rc = rk__io_id(p, "news_id", c->f[0], c->len[0], &e->id, err);
    if (rc) return rc;
    rk_attr_in *a = rk_arena_alloc(&p->arena, 5 * sizeof *a);
    if (!a) return rk_err_set(err, RK_ENOMEM, "mind: out of memory");
    memset(a, 0, 5 * sizeof *a);
    static const char *const names[] = {"category", "subcategory", "title",
                                        "abstract"};
    static const rk_attr_type types[] = {RK_ATTR_CATEGORICAL,
                                         RK_ATTR_CATEGORICAL, RK_ATTR_TEXT,
                                         RK_ATTR_TEXT};
    size_t na = 0;
    for (int k = 0; k < 4; k++) {
        size_t fi = 1 + (size_t)k;
        if (c->len[fi] == 0) continue;
        a[na].name = names[k];
        a[na].type = types[k];
        a[na].len = c->len[fi];
        if ((rc = rk__io_text(p, names[k], c->f[fi], c->len[fi], RK_MAX_TEXT,
                              &a[na].str, err)))
            return rc;
        na++;
    }
    /* Entity lists are short; 256 distinct ids per article is plenty. */
    const size_t max = 256;
    const char **ids = rk_arena_alloc(&p->arena, max * sizeof *ids);
    size_t *lens = rk_arena_alloc(&p->arena, max * sizeof *lens);
    if (!ids || !lens) return rk_err_set(err, RK_ENOMEM, "mind: out of memory");
    size_t nids = 0;
    if ((rc = entities(p, "title_entities", c->f[6], c->len[6], ids, lens,
                       &nids, max, err)) ||
        (rc = entities(p, "abstract_entities", c->f[7], c->len[7], ids, lens,
                       &nids, max, err)))
        return rc;
    if (nids) {
        a[na].name = "entities";
        a[na].type = RK_ATTR_CATEGORICAL_LIST;
        a[na].list = ids;
        a[na].list_lens = lens;
        a[na].n = nids;
        na++;
    }
    e->attrs = a;
    e->nattrs = na;
    out->type = RK_IO_REC_ENTITY;
    return 0;
}

int rk__io_parse_mind(rk_io_parser *p, const char *rec, size_t len,
                      rk_io_record *out, rk_err *err)
{
    if (len == 0) return 0;
    int rc = rk_csv_split(&p->csv, rec, len, err);
    if (rc) return rc;
    return p->fmt == RK_FMT_MIND_BEHAVIORS ? behaviors(p, out, err)
                                           : news(p, out, err);
}
