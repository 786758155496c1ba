#!/bin/sh
# Installs every Debian package rankd needs to build, test and benchmark on a
# fresh Debian 12 machine. Idempotent: packages already present are skipped, so
# a second run does no network work. Must run as root (or with sudo available).
set -eu

PKGS="build-essential pkg-config make clang libclang-rt-14-dev llvm
liblmdb-dev lmdb-utils libyaml-dev libjansson-dev libxxhash-dev
libhiredis-dev redis-server python3
libopenblas-dev liblapacke-dev python3-numpy python3-faiss python3-hnswlib
libxgboost-dev python3-xgboost python3-sklearn libmicrohttpd-dev jq wrk curl
libcurl4-openssl-dev"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done

if [ -z "$missing" ]; then
    echo "setup: all packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: need root to install:$missing" >&2; exit 1; }
    SUDO=sudo
fi
echo "setup: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
