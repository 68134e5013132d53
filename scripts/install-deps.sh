#!/usr/bin/env bash
# Installs the Debian 12 packages tally needs to build, run and test, as root or through sudo.
# When all of them are installed already it only says so, without touching apt (fast path).
set -euo pipefail

packages=(
    # build: compiler, build system, libraries of tallyd, tally and tally-sim
    build-essential cmake pkg-config
    libuv1-dev libsqlite3-dev libcurl4-openssl-dev libmsgpack-dev
    libssl-dev libcjson-dev libmicrohttpd-dev
    # run: TLS roots for the upstreams; the sqlite3 shell for inspecting a replica
    ca-certificates sqlite3
    # test: systemd-analyze, systemd-sysusers and systemd-tmpfiles (test_systemd.sh), jq and curl
    # (integration scripts), setpriv from util-linux (roles by SO_PEERCRED in test_cli.sh)
    systemd jq curl util-linux
    # bench (scripts/bench.sh): Redis, the anchor stock.get is measured beside
    redis-server redis-tools
    # test: python3 (test_fourpx.sh's checks, test_hostile.sh's hostile upstream); clang and its
    # runtime with libFuzzer for the fuzz targets' long runs (scripts/fuzz.sh; optional: without
    # clang CTest still replays their corpora)
    python3 clang libclang-rt-14-dev
    # test: the openssl CLI (test_tls.sh makes a local CA and a server certificate with it)
    openssl
    # test: ip and tc (network namespaces, veth, tbf) and nft (packet loss, partitions) for
    # test_netfault.sh and scripts/netfault-test.sh (as root; skipped without them)
    iproute2 nftables
)

# One dpkg-query for all: it prints a line per installed package, and exits non-zero when one
# is not known at all, which the comparison below treats the same as "not installed".
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for p in "${packages[@]}"; do
    grep -qx "$p installed" <<<"$installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "dependencies present"
    exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "install-deps.sh: missing ${missing[*]}; run this as root (sudo is not installed)" >&2
        exit 1
    fi
    as_root=(sudo)
fi
echo "installing: ${missing[*]}"
# env, because sudo drops the caller's environment.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "dependencies installed"
