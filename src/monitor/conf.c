/*
 * conf.c — the drift detector's options from a `monitor:` config section,
 * one reader for the server (rankd serve) and the offline report (rankd
 * drift), so both judge drift by the same thresholds.
 *
 * Only the detector's keys are read; the server's own keys (window, span,
 * reference, label_requests, label_bytes) are left to the server, which
 * also checks the section's full key list. The options are checked after
 * each key, so a value that rk_drift_opts_check refuses is reported at
 * its own key, with file and line. Names in `exclude` are borrowed from
 * the config tree and held in the caller's array: nothing is allocated.
 */
#include <stddef.h>
#include <string.h>

#include "rk_monitor.h"

/* The double-valued thresholds, in the order they are read. */
static const struct {
    const char *key;
    size_t off;
} thresholds[] = {
    {"ks_alpha", offsetof(rk_drift_opts, ks_alpha)},
    {"chi2_alpha", offsetof(rk_drift_opts, chi2_alpha)},
    {"wasserstein", offsetof(rk_drift_opts, wasserstein)},
    {"js", offsetof(rk_drift_opts, js)},
    {"psi", offsetof(rk_drift_opts, psi)},
    {"dataset_share", offsetof(rk_drift_opts, dataset_share)},
    {"noise_alpha", offsetof(rk_drift_opts, noise_alpha)},
};

/* o checked; a refusal becomes a config error at node n (the key just
 * read: every earlier value passed the same check). */
static int check_at(const rk_drift_opts *o, const rk_conf_node *n, rk_err *err)
{
    rk_err e = {0};
    if (!rk_drift_opts_check(o, &e)) return 0;
    const char *why = e.msg;
    if (!strncmp(why, "drift: ", 7)) why += 7;
    return rk_conf_error(err, n, "%s", why);
}

/* `exclude`: a list of feature names into names[0..cap). */
static int read_exclude(rk_drift_opts *o, const rk_conf_node *n, const char **names,
                        size_t cap, rk_err *err)
{
    if (!n || rk_conf_node_type(n) == RK_CONF_NULL) return 0;
    if (rk_conf_node_type(n) != RK_CONF_LIST)
        return rk_conf_error(err, n, "expected a list of feature names");
    size_t k = rk_conf_len(n);
    if (k > cap) return rk_conf_error(err, n, "at most %zu feature names", cap);
    for (size_t i = 0; i < k; i++) {
        int rc = rk_conf_as_str(rk_conf_at(n, i, NULL), NULL, &names[i], err);
        if (rc) return rc;
        if (!names[i]) return rk_conf_error(err, n, "empty feature name");
    }
    o->exclude = names;
    o->nexclude = k;
    return 0;
}

int rk_drift_opts_from_conf(rk_drift_opts *o, const rk_conf_node *mon,
                            const char **names, size_t cap, rk_err *err)
{
    int rc = rk_drift_opts_check(o, err);
    if (rc || !mon || rk_conf_node_type(mon) == RK_CONF_NULL) return rc;
    if (rk_conf_node_type(mon) != RK_CONF_MAP)
        return rk_conf_error(err, mon, "expected a map, got %s",
                             rk_conf_type_name(rk_conf_node_type(mon)));
    const rk_conf_node *n = rk_conf_get(mon, "small_reference");
    int64_t sr;
    if ((rc = rk_conf_as_int_range(n, (int64_t)o->small_reference, 0, INT64_MAX, &sr,
                                   err)))
        return rc;
    o->small_reference = (uint64_t)sr;
    for (size_t i = 0; i < sizeof thresholds / sizeof thresholds[0]; i++) {
        n = rk_conf_get(mon, thresholds[i].key);
        double *v = (double *)((char *)o + thresholds[i].off);
        if ((rc = rk_conf_as_float(n, *v, v, err)) || (rc = check_at(o, n, err)))
            return rc;
    }
    return read_exclude(o, rk_conf_get(mon, "exclude"), names, cap, err);
}
