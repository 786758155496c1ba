#!/usr/bin/python3
"""rank_quality.py — the ranking quality table: rankd's rankers against
XGBoost and scikit-learn on the same rows, side by side in one run.

  /usr/bin/python3 bench/rank_quality.py [--rankd build/rankd]
      [--shared ../shared/data] [--only ctr,ltr,imbalance] [--json]

Runs (docs in bench/README.md, "rank_quality"):
  ctr        Criteo and Avazu samples: train -> dev (validation, early
             stopping, calibration) and test; AUC and log loss of rankd's
             FTRL, FM and GBDT against XGBoost (binary:logistic) and
             scikit-learn LogisticRegression on hashed features.
  ltr        LETOR 4.0 MQ2008, the five standard folds: NDCG@10 and MAP@10
             of rankd's LambdaMART against XGBoost rank:ndcg with the same
             trees, depth and learning rate.
  imbalance  mammography.csv: PR-AUC with and without negative
             down-sampling, and the mean predicted probability against the
             observed positive rate after correction and calibration.

Every rankd number comes from `rankd train --ranker ... --json` on a store
filled with `rankd import`, exactly what a user runs. Peers read the same
files with their own loaders. Use Debian's interpreter (/usr/bin/python3):
it has python3-xgboost and python3-sklearn.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

SEED = 42


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.stderr.write("command failed: %s\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
        raise SystemExit(1)
    return p.stdout


class Rankd:
    def __init__(self, binary, data):
        self.bin, self.data = binary, data

    def imp(self, *args):
        run([self.bin, "import", "--data", self.data, "--no-progress"] + list(args))

    def train(self, *args):
        out = run([self.bin, "train", "--data", self.data, "--json", "--no-publish"]
                  + list(args))
        return json.loads(out.strip().splitlines()[-1])


# ---- peers' loaders -----------------------------------------------------------

def hash_features(rows, bits):
    """rows: list of (numeric dict, categorical dict) -> CSR of numeric
    columns first (as given) then hashed categoricals, like rankd's default
    row spec (numeric dense, categorical hashed with the column mixed in)."""
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction import FeatureHasher
    ncols = 1 + max([max(n.keys(), default=-1) for n, _ in rows] + [-1])
    h = FeatureHasher(n_features=1 << bits, input_type="string", alternate_sign=False)
    cat = h.transform([["%d=%s" % (k, v) for k, v in c.items()] for _, c in rows])
    indptr, indices, data = [0], [], []
    for n, _ in rows:
        for k in sorted(n):
            indices.append(k)
            data.append(n[k])
        indptr.append(len(indices))
    num = csr_matrix((data, indices, indptr), shape=(len(rows), ncols))
    from scipy.sparse import hstack
    return hstack([num, cat]).tocsr(), ncols


def load_criteo(path):
    rows, y = [], []
    with open(path) as f:
        for line in f:
            t = line.rstrip("\n").split("\t")
            y.append(float(t[0]))
            num = {i: float(t[1 + i]) for i in range(13) if t[1 + i] != ""}
            cat = {i: t[14 + i] for i in range(26) if t[14 + i] != ""}
            rows.append((num, cat))
    return rows, np.array(y)


def load_avazu(path):
    rows, y = [], []
    with open(path) as f:
        for line in f:
            t = line.rstrip("\n").split(",")
            if t[0] == "id":
                continue  # the train file's header; dev and test have none
            y.append(float(t[1]))
            cat = {i: v for i, v in enumerate(t) if i > 1 and v != ""}
            rows.append(({}, cat))
    return rows, np.array(y)


def load_svmlight(paths):
    xs, ys, qs = [], [], []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.split("#")[0].split()
                ys.append(float(line[0]))
                qs.append(int(line[1].split(":")[1]))
                v = np.full(46, np.nan, dtype=np.float32)
                for tok in line[2:]:
                    k, x = tok.split(":")
                    v[int(k) - 1] = float(x)
                xs.append(v)
    return np.array(xs), np.array(ys), np.array(qs)


def codes_matrix(train_rows, rows):
    nnum = 1 + max([max(n.keys(), default=-1) for n, _ in train_rows] + [-1])
    ncat = 1 + max([max(c.keys(), default=-1) for _, c in train_rows] + [-1])
    freq = [dict() for _ in range(ncat)]
    for _, c in train_rows:
        for k, v in c.items():
            freq[k][v] = freq[k].get(v, 0) + 1
    code = [{v: i for i, (v, _) in enumerate(sorted(f.items(), key=lambda kv: (-kv[1], kv[0])))}
            for f in freq]
    X = np.full((len(rows), nnum + ncat), np.nan, dtype=np.float32)
    for i, (n, c) in enumerate(rows):
        for k, v in n.items():
            X[i, k] = v
        for k, v in c.items():
            if k < ncat and v in code[k]:
                X[i, nnum + k] = code[k][v]
    return X


# ---- metrics for the peers (the same definitions as rankd's) ------------------

def logloss(y, p):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def ndcg_map_at(y, s, q, k=10):
    nd, mp = [], []
    for qid in dict.fromkeys(q):
        m = q == qid
        ys, ss = y[m], s[m]
        order = np.argsort(-ss, kind="stable")
        gains = (2 ** ys[order] - 1)[:k]
        disc = 1 / np.log2(np.arange(2, 2 + len(gains)))
        ideal = (2 ** np.sort(ys)[::-1] - 1)[:k]
        idcg = float(np.sum(ideal * disc[:len(ideal)]))
        nd.append(float(np.sum(gains * disc)) / idcg if idcg > 0 else 1.0)
        rel = ys[order] > 0
        r = int(np.sum(ys > 0))
        if r == 0:
            mp.append(1.0)
            continue
        hits, acc = 0, 0.0
        for i, v in enumerate(rel[:k]):
            if v:
                hits += 1
                acc += hits / (i + 1)
        mp.append(acc / r)
    return float(np.mean(nd)), float(np.mean(mp))


# ---- the three runs -------------------------------------------------------------

CTR_PARAMS = {
    "gbdt": ["--trees", "300", "--depth", "6", "--eta", "0.05", "--early-stopping", "30",
             "--min-child-weight", "5", "--threads", "1"],
    "ftrl": ["--epochs", "3"],
    "fm": ["--epochs", "20"],
}


def ctr(rk, shared, out):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    import xgboost as xgb
    sets = {
        "criteo": ("criteo-kaggle-sample-8k", ["train.tsv", "dev.tsv", "test.tsv"]),
        "avazu": ("avazu-sample-9k", ["train.csv", "dev.csv", "test.csv"]),
    }
    for name, (d, files) in sets.items():
        paths = [os.path.join(shared, d, f) for f in files]
        parts = ["train", "dev", "test"]
        for part, p in zip(parts, paths):
            if name == "criteo":
                rk.imp("--format", "criteo", "--dataset", "%s-%s" % (name, part), p)
            elif part == "train":
                rk.imp("--kind", "rows", "--ignore", "id", "--label", "click",
                       "--categorical", "all", "--dataset", "%s-%s" % (name, part), p)
            else:
                # The sample's dev and test files have no header line; the
                # columns are the train file's (id, click, ...).
                rk.imp("--kind", "rows", "--no-header", "--ignore", "0", "--label", "1",
                       "--categorical", "all", "--dataset", "%s-%s" % (name, part), p)
        for model in ("ftrl", "fm", "gbdt"):
            t0 = time.time()
            extra = list(CTR_PARAMS[model])
            if model == "gbdt" and name == "avazu":
                # Avazu has no numeric column: trees get the hashed
                # categoricals folded into 256 columns.
                extra += ["--sparse-cols", "256"]
            r = rk.train("--ranker", model, "--dataset", name + "-train",
                         "--valid-dataset", name + "-dev", "--test-dataset", name + "-test",
                         "--calibration", "platt" if model == "gbdt" else "none",
                         *extra)
            out.append({"run": "ctr", "data": name, "system": "rankd-" + model,
                        "dev_auc": r["valid"]["auc"], "dev_logloss": r["valid"]["logloss"],
                        "test_auc": r["test"]["auc"], "test_logloss": r["test"]["logloss"],
                        "seconds": round(time.time() - t0, 2)})
        loader = load_criteo if name == "criteo" else load_avazu
        data = [loader(p) for p in paths]
        allrows = data[0][0] + data[1][0] + data[2][0]
        X, _ = hash_features(allrows, 20)
        n0, n1 = len(data[0][0]), len(data[0][0]) + len(data[1][0])
        Xtr, Xdv, Xte = X[:n0], X[n0:n1], X[n1:]
        ytr, ydv, yte = data[0][1], data[1][1], data[2][1]
        # LogisticRegression: C picked on dev from a small grid.
        sys.stderr.write("%s: rankd done, peers...\n" % name)
        t0 = time.time()
        best = None
        for C in (0.01, 0.03, 0.1, 0.3, 1.0):
            lr = LogisticRegression(C=C, max_iter=2000, solver="liblinear")
            lr.fit(Xtr, ytr)
            a = roc_auc_score(ydv, lr.predict_proba(Xdv)[:, 1])
            if best is None or a > best[0]:
                best = (a, lr)
        lr = best[1]
        pdv, pte = lr.predict_proba(Xdv)[:, 1], lr.predict_proba(Xte)[:, 1]
        out.append({"run": "ctr", "data": name, "system": "sklearn-lr",
                    "dev_auc": roc_auc_score(ydv, pdv), "dev_logloss": logloss(ydv, pdv),
                    "test_auc": roc_auc_score(yte, pte), "test_logloss": logloss(yte, pte),
                    "seconds": round(time.time() - t0, 2)})
        # Trees get the numeric columns plus each categorical column as a
        # frequency-rank code (codes from the training rows, unseen = NaN),
        # the usual tree encoding: 1M hashed columns would make XGBoost's
        # histograms the whole cost.
        t0 = time.time()
        Xtr, Xdv, Xte = [codes_matrix(data[0][0], r) for r in (data[0][0], data[1][0], data[2][0])]
        bst = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.05,
                         "min_child_weight": 5, "eval_metric": "logloss", "seed": SEED,
                         "nthread": 1, "tree_method": "hist"},
                        xgb.DMatrix(Xtr, label=ytr), 300,
                        evals=[(xgb.DMatrix(Xdv, label=ydv), "dev")],
                        early_stopping_rounds=30, verbose_eval=False)
        rng = (0, bst.best_iteration + 1)
        pdv = bst.predict(xgb.DMatrix(Xdv), iteration_range=rng)
        pte = bst.predict(xgb.DMatrix(Xte), iteration_range=rng)
        out.append({"run": "ctr", "data": name, "system": "xgboost",
                    "dev_auc": roc_auc_score(ydv, pdv), "dev_logloss": logloss(ydv, pdv),
                    "test_auc": roc_auc_score(yte, pte), "test_logloss": logloss(yte, pte),
                    "seconds": round(time.time() - t0, 2)})


LTR_TREES, LTR_DEPTH, LTR_ETA = 200, 6, 0.05


def ltr(rk, shared, out):
    import xgboost as xgb
    d = os.path.join(shared, "letor4-mq2008")
    for i in range(1, 6):
        rk.imp("--format", "svmlight", "--dataset", "s%d" % i, os.path.join(d, "S%d.txt" % i))
    for fold in range(1, 6):
        # The standard folds: train = three partitions, vali, test, cyclic.
        parts = [((fold - 1 + j) % 5) + 1 for j in range(5)]
        tr, va, te = parts[:3], parts[3], parts[4]
        r = rk.train("--ranker", "gbdt", "--task", "rank",
                     "--dataset", ",".join("s%d" % j for j in tr),
                     "--valid-dataset", "s%d" % va, "--test-dataset", "s%d" % te,
                     "--trees", str(LTR_TREES), "--depth", str(LTR_DEPTH),
                     "--eta", str(LTR_ETA), "--threads", "1")
        out.append({"run": "ltr", "data": "mq2008", "fold": fold, "system": "rankd-lambdamart",
                    "ndcg@10": r["test"]["ndcg@10"], "map@10": r["test"]["map@10"]})
        Xtr, ytr, qtr = load_svmlight([os.path.join(d, "S%d.txt" % j) for j in tr])
        Xte, yte, qte = load_svmlight([os.path.join(d, "S%d.txt" % te)])
        _, gtr = np.unique(qtr, return_counts=True)
        # np.unique sorts; groups must follow the row order.
        sizes = [int(np.sum(qtr == q)) for q in dict.fromkeys(qtr)]
        dtr = xgb.DMatrix(Xtr, label=ytr, missing=np.nan)
        dtr.set_group(sizes)
        bst = xgb.train({"objective": "rank:ndcg", "max_depth": LTR_DEPTH, "eta": LTR_ETA,
                         "seed": SEED, "nthread": 1, "tree_method": "hist"},
                        dtr, LTR_TREES)
        s = bst.predict(xgb.DMatrix(Xte, missing=np.nan))
        nd, mp = ndcg_map_at(yte, s, qte)
        out.append({"run": "ltr", "data": "mq2008", "fold": fold, "system": "xgboost",
                    "ndcg@10": nd, "map@10": mp})


def imbalance(rk, shared, out):
    p = os.path.join(shared, "imbalanced-tabular", "mammography.csv")
    rk.imp("--kind", "rows", "--no-header", "--label", "6", "--dataset", "mammography", p)
    common = ["--dataset", "mammography", "--split-seed", "7", "--valid-frac", "0.25",
              "--test-frac", "0.25"]
    for model in ("gbdt", "ftrl"):
        extra = (["--trees", "200", "--depth", "4", "--eta", "0.05", "--threads", "1"]
                 if model == "gbdt" else ["--epochs", "5"])
        for ds, calib in ((None, "none"), (None, "platt"), ("0.1", "none"),
                          ("0.1", "platt"), ("0.1", "isotonic")):
            args = ["--ranker", model] + common + extra + ["--calibration", calib]
            if ds:
                args += ["--downsample", ds]
            r = rk.train(*args)
            t = r["test"]
            out.append({"run": "imbalance", "data": "mammography",
                        "system": "rankd-" + model, "downsample": float(ds or 1),
                        "calibration": calib, "pr_auc": t["pr_auc"], "auc": t["auc"],
                        "mean_prediction": t["mean_prediction"],
                        "positive_rate": t["positive_rate"]})


def table(out):
    f = sys.stderr
    ctr_rows = [o for o in out if o["run"] == "ctr"]
    if ctr_rows:
        f.write("\nCTR (train -> dev for early stopping / calibration; test)\n")
        f.write("%-8s %-18s %8s %8s %8s %8s\n" % ("data", "system", "dev AUC", "dev LL",
                                                   "test AUC", "test LL"))
        for o in ctr_rows:
            f.write("%-8s %-18s %8.4f %8.4f %8.4f %8.4f\n" % (
                o["data"], o["system"], o["dev_auc"], o["dev_logloss"], o["test_auc"],
                o["test_logloss"]))
        for data in dict.fromkeys(o["data"] for o in ctr_rows):
            rows = [o for o in ctr_rows if o["data"] == data]
            ours = max(o["test_auc"] for o in rows if o["system"].startswith("rankd"))
            peer = max(o["test_auc"] for o in rows if not o["system"].startswith("rankd"))
            f.write("%s: best rankd test AUC %.4f, best peer %.4f -> %s\n" % (
                data, ours, peer, "at least the peer" if ours >= peer else "BELOW the peer"))
    ltr_rows = [o for o in out if o["run"] == "ltr"]
    if ltr_rows:
        f.write("\nLTR MQ2008, test fold, mean of folds\n")
        for sysname in dict.fromkeys(o["system"] for o in ltr_rows):
            rs = [o for o in ltr_rows if o["system"] == sysname]
            f.write("%-18s NDCG@10 %.4f  MAP@10 %.4f  (folds %s)\n" % (
                sysname, np.mean([o["ndcg@10"] for o in rs]),
                np.mean([o["map@10"] for o in rs]),
                " ".join("%.4f" % o["ndcg@10"] for o in rs)))
    im = [o for o in out if o["run"] == "imbalance"]
    if im:
        f.write("\nImbalance (mammography, seeded 50/25/25 split; test)\n")
        f.write("%-12s %6s %-9s %7s %7s %9s %9s %7s\n" % ("system", "neg", "calib",
                                                         "PR-AUC", "AUC", "mean p",
                                                         "pos rate", "|diff|"))
        for o in im:
            f.write("%-12s %6.2f %-9s %7.4f %7.4f %9.4f %9.4f %7.4f\n" % (
                o["system"], o["downsample"], o["calibration"], o["pr_auc"], o["auc"],
                o["mean_prediction"], o["positive_rate"],
                abs(o["mean_prediction"] - o["positive_rate"])))


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--rankd", default=os.path.join(here, "..", "build", "rankd"))
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared", "data"))
    ap.add_argument("--only", default="ctr,ltr,imbalance")
    a = ap.parse_args()
    if not os.path.isdir(a.shared):
        sys.stderr.write("rank_quality: %s not found; the quality table needs the shared "
                         "datasets (skipped)\n" % a.shared)
        return 0
    tmp = tempfile.mkdtemp(prefix="rankd-quality-")
    out = []
    try:
        rk = Rankd(a.rankd, os.path.join(tmp, "data"))
        for run_name in a.only.split(","):
            {"ctr": ctr, "ltr": ltr, "imbalance": imbalance}[run_name](rk, a.shared, out)
        for o in out:
            print(json.dumps(o))
        table(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
