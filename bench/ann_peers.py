#!/usr/bin/python3
"""ann_peers.py - the peers of bench/ann.c: Faiss IndexHNSWFlat (inner
product) and hnswlib (space 'ip') on the vectors bench/ann.c wrote.

Run by build/bench/ann with Debian's /usr/bin/python3 (python3-faiss,
python3-hnswlib, python3-numpy); not meant to be run by hand, but it can be:

  /usr/bin/python3 bench/ann_peers.py --dir DIR --n N --nq Q --dim D \
      --M 16 --efc 200 --threads 2 --efs 16,32,64 --data synthetic

DIR holds base.f32 (N x D float32, row-major), queries.f32 (Q x D) and
gt.u32 (Q x 10 exact neighbour ids, computed by rankd's flat index). Both
peers are built with --threads threads and searched with one thread, the
whole query set in one call (so Python overhead is one call per ef).
Output: one JSON line per build and per (system, ef) on stdout, in the
schema of bench/ann.c; messages on stderr. A peer that cannot be imported
is reported as {"phase": "skipped"} and the other still runs.
"""
import argparse
import gc
import json
import os
import sys
import time


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def emit(obj):
    print(json.dumps(obj), flush=True)


def recall_at(found, gt, k):
    hit = 0
    for row, truth in zip(found, gt):
        hit += len(set(int(x) for x in row[:k]) & set(int(x) for x in truth[:k]))
    return hit / float(len(gt) * k)


def run_faiss(a, base, queries, gt, common):
    import faiss
    faiss.omp_set_num_threads(a.threads)
    gc.collect()
    r0 = rss_bytes()
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(a.dim, a.M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = a.efc
    index.add(base)
    build = time.perf_counter() - t0
    emit(dict(common, system="faiss", phase="build", build_sec=build,
              threads=a.threads, rss_delta_bytes=rss_bytes() - r0,
              version=faiss.__version__))
    faiss.omp_set_num_threads(1)
    for ef in a.efs:
        index.hnsw.efSearch = ef
        t0 = time.perf_counter()
        _, ids = index.search(queries, a.k)
        sec = time.perf_counter() - t0
        emit(dict(common, system="faiss", phase="search", ef=ef, k=a.k,
                  queries=len(queries), qps=len(queries) / sec,
                  recall=recall_at(ids, gt, a.k)))
    del index
    gc.collect()


def run_hnswlib(a, base, queries, gt, common):
    import hnswlib
    import numpy as np
    gc.collect()
    r0 = rss_bytes()
    t0 = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=a.dim)
    index.init_index(max_elements=len(base), ef_construction=a.efc, M=a.M,
                     random_seed=42)
    index.set_num_threads(a.threads)
    index.add_items(base, np.arange(len(base)), num_threads=a.threads)
    build = time.perf_counter() - t0
    emit(dict(common, system="hnswlib", phase="build", build_sec=build,
              threads=a.threads, rss_delta_bytes=rss_bytes() - r0))
    index.set_num_threads(1)
    for ef in a.efs:
        index.set_ef(ef)
        t0 = time.perf_counter()
        ids, _ = index.knn_query(queries, k=a.k, num_threads=1)
        sec = time.perf_counter() - t0
        emit(dict(common, system="hnswlib", phase="search", ef=ef, k=a.k,
                  queries=len(queries), qps=len(queries) / sec,
                  recall=recall_at(ids, gt, a.k)))
    del index
    gc.collect()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--nq", type=int, required=True)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--efc", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--efs", default="16,32,64,128,256,512")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--only", default="faiss,hnswlib")
    a = p.parse_args()
    a.efs = [int(x) for x in a.efs.split(",") if x]
    try:
        import numpy as np
    except ImportError as e:
        for s in a.only.split(","):
            emit(dict(bench="ann", data=a.data, system=s, phase="skipped",
                      reason="numpy: %s" % e))
        return 0
    base = np.fromfile(os.path.join(a.dir, "base.f32"), dtype=np.float32)
    base = base.reshape(a.n, a.dim)
    queries = np.fromfile(os.path.join(a.dir, "queries.f32"), dtype=np.float32)
    queries = queries.reshape(a.nq, a.dim)
    gt = np.fromfile(os.path.join(a.dir, "gt.u32"), dtype=np.uint32)
    gt = gt.reshape(a.nq, -1)
    common = dict(bench="ann", data=a.data, n=a.n, dim=a.dim, M=a.M,
                  efc=a.efc)
    runners = {"faiss": run_faiss, "hnswlib": run_hnswlib}
    for name in a.only.split(","):
        try:
            __import__(name)
        except ImportError as e:
            print("ann_peers: %s not importable (%s): skipped; install "
                  "python3-%s" % (name, e, name), file=sys.stderr)
            emit(dict(bench="ann", data=a.data, system=name, phase="skipped",
                      reason=str(e)))
            continue
        runners[name](a, base, queries, gt, common)
    return 0


if __name__ == "__main__":
    sys.exit(main())
