/*
 * fuzz_import_criteo.c — libFuzzer target for the Criteo TSV parser.
 */
#include "import_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_import_one(RK_FMT_CRITEO, RK_KIND_ROWS, data, size);
    return 0;
}
