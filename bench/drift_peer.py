#!/usr/bin/python3
"""drift_peer.py - the peer of bench/drift.c: SciPy's drift statistics on
the samples bench/drift.c generated.

Run by build/bench/drift with Debian's /usr/bin/python3 (python3-scipy,
python3-numpy); not meant to be run by hand, but it can be:

  /usr/bin/python3 bench/drift_peer.py --dir DIR --features F --ref N \
      --cur M --max-edges E [--reps R]

DIR holds ref.f32 (F x N float32, feature-major), cur.f32 (F x M),
edges.f64 (F x E float64: each feature's reference decile edges, the
first nedges[f] used) and nedges.i32 (F int32). The samples are converted
to float64 before any timing (exact). Timed, single thread, per feature,
best of R passes over all features:

  ks           scipy.stats.ks_2samp(ref, cur)            (method='auto')
  wasserstein  scipy.stats.wasserstein_distance(ref, cur)
  js           numpy.searchsorted(edges, x, 'right') + numpy.bincount for
               both samples, then
               scipy.spatial.distance.jensenshannon(hr, hc, base=2)

Wall and CPU time (time.process_time; the numpy calls involved are
single-threaded) of the fastest pass are reported.

Output: one JSON line per statistic on stdout in bench/drift.c's schema,
and DIR/peer_values.f64 (F x 4 float64: ks statistic, ks p-value,
wasserstein, js) for bench/drift.c to compare. Without SciPy the output
is one {"phase": "skipped"} line.
"""
import argparse
import json
import os
import sys
import time


def emit(obj):
    print(json.dumps(obj, separators=(",", ":")), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--features", type=int, required=True)
    ap.add_argument("--ref", type=int, required=True)
    ap.add_argument("--cur", type=int, required=True)
    ap.add_argument("--max-edges", type=int, required=True)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    try:
        import numpy as np
        import scipy
        from scipy import stats
        from scipy.spatial import distance
    except Exception as e:  # noqa: BLE001 - any import failure skips the peer
        emit({"bench": "drift", "system": "scipy", "phase": "skipped",
              "reason": "cannot import scipy: %s" % e})
        return 0
    nf, n, m, me = a.features, a.ref, a.cur, a.max_edges
    ref = np.fromfile(os.path.join(a.dir, "ref.f32"), dtype=np.float32)
    cur = np.fromfile(os.path.join(a.dir, "cur.f32"), dtype=np.float32)
    edges = np.fromfile(os.path.join(a.dir, "edges.f64"), dtype=np.float64)
    nedges = np.fromfile(os.path.join(a.dir, "nedges.i32"), dtype=np.int32)
    if (len(ref) != nf * n or len(cur) != nf * m or len(edges) != nf * me
            or len(nedges) != nf):
        raise ValueError("array sizes do not match the arguments")
    refs = [ref[f * n:(f + 1) * n].astype(np.float64) for f in range(nf)]
    curs = [cur[f * m:(f + 1) * m].astype(np.float64) for f in range(nf)]
    edg = [edges[f * me:f * me + int(nedges[f])].copy() for f in range(nf)]
    values = np.zeros((nf, 4))

    def ks(f):
        r = stats.ks_2samp(refs[f], curs[f])
        values[f, 0] = r.statistic
        values[f, 1] = r.pvalue

    def wd(f):
        values[f, 2] = stats.wasserstein_distance(refs[f], curs[f])

    def js(f):
        e = edg[f]
        nb = len(e) + 1
        hr = np.bincount(np.searchsorted(e, refs[f], "right"), minlength=nb)
        hc = np.bincount(np.searchsorted(e, curs[f], "right"), minlength=nb)
        values[f, 3] = distance.jensenshannon(hr, hc, base=2)

    for name, fn in (("ks", ks), ("wasserstein", wd), ("js", js)):
        best, lat_best, cpu_best = None, None, None
        for _ in range(max(1, a.reps)):
            lat = []
            t0 = time.perf_counter()
            c0 = time.process_time()
            for f in range(nf):
                t1 = time.perf_counter()
                fn(f)
                lat.append((time.perf_counter() - t1) * 1e6)
            t = time.perf_counter() - t0
            c = time.process_time() - c0
            if best is None or t < best:
                best, lat_best, cpu_best = t, sorted(lat), c
        emit({"bench": "drift", "system": "scipy", "stat": name,
              "features": nf, "ref_rows": n, "cur_rows": m,
              "seconds": round(best, 6),
              "rows_x_features_per_sec": round((n + m) * nf / best),
              "cpu_seconds": round(cpu_best, 6),
              "rows_x_features_per_cpu_sec": round((n + m) * nf / cpu_best),
              "p50_us": round(lat_best[(nf - 1) // 2], 1),
              "p99_us": round(lat_best[int(0.99 * (nf - 1) + 0.5)], 1),
              "scipy": scipy.__version__, "numpy": np.__version__})
    values.astype(np.float64).tofile(os.path.join(a.dir, "peer_values.f64"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
