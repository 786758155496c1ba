/*
 * fuzz_conf_yaml.c — libFuzzer target for the YAML configuration loader:
 * any input must load or fail cleanly, and a loaded tree must be
 * consistent (see conf_fuzz.h for what is checked).
 */
#include "conf_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_conf_one(rk_conf_parse_yaml, data, size);
    return 0;
}
