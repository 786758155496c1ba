/*
 * fuzz_import_csv.c — libFuzzer target for the RFC 4180 tokenizer and the
 * generic CSV/TSV formats. The first input byte picks the variant: events,
 * users or items, comma- or tab-separated. The tokenizer also runs on the
 * raw input, and must agree with rk_csv_open_quote about unterminated
 * quotes.
 */
#include "import_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned v = fz_pick(&data, &size, 6);
    rk_import_format f = v & 1 ? RK_FMT_TSV : RK_FMT_CSV;
    rk_import_kind k = (rk_import_kind)(v >> 1); /* events, users, items */
    fz_import_one(f, k, data, size);

    rk_csv c;
    rk_csv_init(&c, f == RK_FMT_TSV ? '\t' : ',', 1);
    rk_err err = {0};
    int rc = rk_csv_split(&c, (const char *)data, size, &err);
    if (rc == 0) {
        size_t total = 0;
        for (size_t i = 0; i < c.n; i++) {
            FZ_ASSERT(strlen(c.f[i]) <= c.len[i]); /* NULs may be data */
            total += c.len[i];
        }
        FZ_ASSERT(total <= size);
        FZ_ASSERT(!rk_csv_open_quote((const char *)data, size, c.sep));
    } else if (rc == RK_EPARSE && strstr(err.msg, "unterminated")) {
        FZ_ASSERT(rk_csv_open_quote((const char *)data, size, c.sep));
    }
    rk_csv_free(&c);
    return 0;
}
