/*
 * fuzz_import_jsonl.c — libFuzzer target for the JSON-lines formats. The
 * first input byte picks events, users, items or rows.
 */
#include "import_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned v = fz_pick(&data, &size, 4);
    fz_import_one(RK_FMT_JSONL, (rk_import_kind)v, data, size);
    return 0;
}
