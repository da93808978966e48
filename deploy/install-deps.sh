#!/usr/bin/env bash
# Installs every Debian 12 package Sluice needs to build, test, fuzz and
# benchmark. Idempotent: when everything is present it only checks (no
# apt-get update), so it is quick on a machine that has run it before.
set -euo pipefail

PKGS=(
  build-essential pkg-config meson ninja-build
  clang libclang-rt-14-dev
  libraft-dev libuv1-dev libzstd-dev
  libprotobuf-c-dev protobuf-c-compiler
  libcriterion-dev libinih-dev libxxhash-dev uuid-dev libmicrohttpd-dev
  python3 python3-yaml
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
