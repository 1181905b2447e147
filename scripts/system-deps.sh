#!/usr/bin/env bash
# Debian packages some tests need: a real redis-server for the Redis rate-limit storage, and
# Chromium (with its driver) for tests/test_browser.py, the example SPA in a real browser.
# Installed when missing and we may (root with apt-get); otherwise those tests say what is
# missing (and fail under CI=true).
set -u
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || echo "warning: could not install ${missing[*]}"
else
  echo "warning: ${missing[*]} missing; install it to run every test (apt-get install ${missing[*]})"
fi
exit 0
