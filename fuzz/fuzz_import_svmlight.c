/*
 * fuzz_import_svmlight.c — libFuzzer target for the SVMlight/LETOR parser.
 */
#include "import_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_import_one(RK_FMT_SVMLIGHT, RK_KIND_ROWS, data, size);
    return 0;
}
