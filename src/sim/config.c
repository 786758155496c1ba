/*
 * config.c — the rankd configuration that matches the simulated world
 * (`rankd simulate --write-config`): the video platform's schema and
 * events, features that can learn what drives the simulated clicks
 * (category affinity, popularity, device, bandwidth — the context field
 * the pipeline_bug scenario corrupts), labels, retrieval and serve.
 */
#include <errno.h>

#include "sim_int.h"

int rk_sim_write_schema(FILE *f)
{
    int n = fputs(
        "store:\n"
        "  fsync: everysec\n"
        "entities:\n"
        "  item:\n"
        "    attributes:\n"
        "      title: text\n"
        "      category: categorical\n"
        "      tags: categorical_list\n"
        "      duration: numeric\n"
        "      published: timestamp\n"
        "  user:\n"
        "    attributes:\n"
        "      country: categorical\n"
        "      age: numeric\n"
        "      fav_category: categorical   # profile: category of most clicks in the history\n"
        "events:\n"
        "  impression: {role: exposure}\n"
        "  click: {role: positive, weight: 1}\n"
        "  like: {role: positive, weight: 3}\n"
        "  watch: {role: valued, weight: 1}\n",
        f);
    return n < 0 || ferror(f) ? RK_EIO : 0;
}

int rk_sim_write_config(FILE *f, const rk_sim_opts *o)
{
    if (fprintf(f,
            "# rankd configuration for the simulated video platform, written by\n"
            "# `rankd simulate --write-config` (world: seed %llu, %u users, %u items,\n"
            "# %u categories). See docs/simulator.md.\n",
            (unsigned long long)o->seed, o->users, o->items, o->categories) < 0 ||
        rk_sim_write_schema(f))
        return RK_EIO;
    int n = fputs(
        "retrieval:\n"
        "  interactions: {valued_min: 10}   # a watch of 10 s or more is a positive\n"
        "  models: [ials, covis]\n"
        "  ials: {factors: 32}\n"
        "features:\n"
        "  hash_bits: 18\n"
        "  defs:\n"
        "    duration: {kind: attribute, attr: duration, log1p: true}\n"
        "    category: {kind: attribute, attr: category}\n"
        "    item_age: {kind: attribute, attr: published, unit: h}\n"
        "    item_ctr: {kind: rate, key: item, num: [click], den: [impression],\n"
        "               half_life: 1d, prior: {mean: 0.05, strength: 20}}\n"
        "    item_clicks: {kind: counter, key: item, events: [click], half_life: 1d}\n"
        "    # A user's taste by category, over days and over the last hours: the\n"
        "    # short one follows a taste that moves within hours, the long one\n"
        "    # carries a sparse history; retraining learns how much each counts.\n"
        "    user_cat_ctr: {kind: rate, key: [user, item.category], num: [click],\n"
        "                   den: [impression], half_life: 3d, prior: {mean: 0.05, strength: 5}}\n"
        "    user_cat_ctr_4h: {kind: rate, key: [user, item.category], num: [click],\n"
        "                      den: [impression], half_life: 4h, prior: {mean: 0.05, strength: 5}}\n"
        "    since_cat_click: {kind: recency, key: [user, item.category], events: [click]}\n"
        "    # The user's profile (favourite category from the history, written at\n"
        "    # setup) crossed with the item's: what users of one favourite click,\n"
        "    # learned across users, so a taste that moves for many is learned\n"
        "    # from the first labels after the move.\n"
        "    user_fav_cat: {kind: attribute, entity: user, attr: fav_category, emit: false}\n"
        "    fav_x_cat: {kind: cross, of: [user_fav_cat, category]}\n"
        "    hour: {kind: context, field: hour}\n"
        "    device: {kind: context, field: device}\n"
        "    # The client's measured bandwidth in Mbit/s; the pipeline_bug\n"
        "    # scenario sends it x1000 (kbit/s) or leaves it out.\n"
        "    bandwidth: {kind: context, field: bandwidth, type: numeric}\n"
        "    ann: {kind: score}\n"
        "labels:\n"
        "  window: 30m\n"
        "  exposure: [impression]\n"
        "  positive: {click: 1, like: 3}\n"
        "  valued: {watch: 0.05}\n"
        "serve:\n"
        "  ranker: feed\n"
        "  # The simulator sends its simulated times: half-lives, label windows\n"
        "  # and the loop's schedules run in simulated time (docs/serving.md).\n"
        "  clock: event\n"
        "  candidates: 200\n"
        "  refresh_s: 2\n"
        "  rules: {max_per_category: 4, explore_slots: 1}\n"
        "log:\n"
        "  level: warn\n",
        f);
    if (n < 0 || fflush(f) != 0 || ferror(f)) return RK_EIO;
    return 0;
}
