/*
 * progress.c — the import progress bar.
 *
 * Drawn on stderr only when stderr is a terminal, so logs and pipes never
 * collect carriage-return noise, and at most ten times a second so drawing
 * never shows up in the import's profile.
 */
#include <unistd.h>

#include "io_int.h"

void rk__io_progress_start(rk__io_progress *pg, int want, const char *name)
{
    pg->on = want && isatty(fileno(stderr));
    pg->start_ns = pg->last_ns = rk_clock_mono_ns();
    pg->name = name;
    pg->drawn = 0;
}

void rk__io_progress_update(rk__io_progress *pg, uint64_t done,
                            uint64_t total, uint64_t records,
                            uint64_t rejected, const char *phase)
{
    if (!pg->on) return;
    uint64_t now = rk_clock_mono_ns();
    if (pg->drawn && now - pg->last_ns < 100000000ull) return;
    pg->last_ns = now;
    pg->drawn = 1;
    double secs = (double)(now - pg->start_ns) / 1e9;
    double rate = secs > 0 ? (double)records / secs : 0;
    char bar[31];
    int filled = total ? (int)(30.0 * (double)done / (double)total) : 0;
    if (filled > 30) filled = 30;
    for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
    bar[30] = '\0';
    double pct = total ? 100.0 * (double)done / (double)total : 0;
    fprintf(stderr,
            "\r%s %s [%s] %5.1f%% %.1f/%.1f MB %llu rows %.0f rows/s "
            "%llu rejected\033[K",
            phase, pg->name, bar, pct, (double)done / 1e6,
            (double)total / 1e6, (unsigned long long)records, rate,
            (unsigned long long)rejected);
    fflush(stderr);
}

void rk__io_progress_end(rk__io_progress *pg)
{
    if (pg->on && pg->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    pg->drawn = 0;
}
