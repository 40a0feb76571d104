#!/usr/bin/env bash
# Chromium for the real-browser test (tests/e2e/test_browser.py drives the system `chromium` with Playwright;
# it never downloads a browser). Present on PATH: nothing to do. Missing, running as root with apt-get:
# installs Debian's `chromium` package (apt-get update first, quiet, non-interactive). Otherwise it prints
# why it could not, and the browser test skips with that reason; under CI (CI set and not "false") a
# browser that cannot be installed is an error (exit 1), so CI never skips the test silently.
set -uo pipefail

fail() {
  echo "ensure_chromium: $1; tests/e2e/test_browser.py will skip" >&2
  if [ -n "${CI:-}" ] && [ "${CI}" != "false" ]; then
    echo "ensure_chromium: CI is set, so this is an error" >&2
    exit 1
  fi
  exit 0
}

if command -v chromium >/dev/null 2>&1; then
  echo "chromium present: $(command -v chromium)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  fail "chromium is not on PATH and this is not root (install it with: sudo apt-get install -y chromium)"
fi
if ! command -v apt-get >/dev/null 2>&1; then
  fail "chromium is not on PATH and apt-get is not available (install Chromium with the system's package manager)"
fi
echo "ensure_chromium: installing Debian's chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
  fail "apt-get could not install chromium (see the apt output above)"
fi
if ! command -v chromium >/dev/null 2>&1; then
  fail "apt-get installed chromium but no chromium is on PATH"
fi
echo "chromium installed: $(command -v chromium)"
