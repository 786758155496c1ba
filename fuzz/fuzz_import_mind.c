/*
 * fuzz_import_mind.c — libFuzzer target for the MIND parsers. The first
 * input byte picks behaviors.tsv or news.tsv.
 */
#include "import_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned v = fz_pick(&data, &size, 2);
    fz_import_one(v ? RK_FMT_MIND_NEWS : RK_FMT_MIND_BEHAVIORS,
                  RK_KIND_EVENTS, data, size);
    return 0;
}
