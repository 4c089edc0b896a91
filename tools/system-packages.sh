#!/usr/bin/env bash
# The system programs cnnzoo's tests need beside Python: Graphviz's `dot` (`cnnzoo plot`) and
# headless Chromium with its driver (tests/test_serve_browser.py). Installs what is missing
# with apt-get (as root, or through sudo), saying what it installs; where it cannot, it says
# what to install and exits 1, so `... && python -m pytest` stops before a test fails on it.
set -euo pipefail
packages=()
command -v dot >/dev/null 2>&1 || packages+=(graphviz)
{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
[ ${#packages[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "cnnzoo's tests need ${packages[*]}, and this machine has no apt-get: install them with its package manager (macOS: brew install graphviz chromium chromedriver)." >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "cnnzoo's tests need ${packages[*]}: run apt-get install ${packages[*]} as root." >&2
    exit 1
  fi
  sudo=(sudo)
fi
echo "installing ${packages[*]} for cnnzoo's tests (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null
