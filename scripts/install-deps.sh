#!/usr/bin/env bash
# Installs the Debian 12 packages tally needs to build, run and test. Does nothing (quickly)
# when they are all present. Runs apt-get as root, or through sudo.
set -euo pipefail
packages=(
    build-essential cmake pkg-config
    libuv1-dev libsqlite3-dev libcurl4-openssl-dev libmsgpack-dev libssl-dev libcjson-dev
    libmicrohttpd-dev
    sqlite3 jq curl ca-certificates util-linux procps systemd
)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "dependencies present"
    exit 0
fi
echo "installing: ${missing[*]}"
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "dependencies installed"
