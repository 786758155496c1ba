/*
 * fuzz_conf_json.c — libFuzzer target for the JSON configuration loader.
 * Besides the checks of conf_fuzz.h it compares with jansson alone: text
 * that jansson accepts must load, unless it exceeds the depth or node
 * limits, since the loader's own text walk must never lose its place. (The
 * loader refuses raw NUL bytes, which jansson sometimes skips.)
 */
#include <jansson.h>

#include "conf_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int rc = fz_conf_one(rk_conf_parse_json, data, size);
    if (rc != 0 && rc != RK_ELIMIT && !memchr(data, 0, size)) {
        json_t *j = json_loadb((const char *)data, size,
                               JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        FZ_ASSERT(j == NULL);
    }
    return 0;
}
