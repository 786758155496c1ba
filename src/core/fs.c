/*
 * fs.c — file-system helpers shared by the modules that write directories
 * (the model registry, `rankd init`).
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "rk_core.h"

int rk_mkdir_p(const char *path, rk_err *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf) return rk_err_set(err, RK_EINVAL, "path too long");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return rk_err_set(err, RK_EIO, "cannot create directory %s: %s", buf,
                              strerror(errno));
        buf[i] = c;
    }
    return 0;
}
