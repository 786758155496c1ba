/*
 * fuzz_import_movielens.c — libFuzzer target for the MovieLens parsers.
 * The first input byte picks u.data, u.item, u.user, ratings.csv or
 * movies.csv.
 */
#include "import_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const rk_import_format fmts[] = {RK_FMT_ML_DATA, RK_FMT_ML_ITEM,
                                            RK_FMT_ML_USER, RK_FMT_ML_RATINGS,
                                            RK_FMT_ML_MOVIES};
    unsigned v = fz_pick(&data, &size, 5);
    fz_import_one(fmts[v], RK_KIND_EVENTS, data, size);
    return 0;
}
