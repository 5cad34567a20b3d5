#!/usr/bin/env bash
# The viewer's browser test drives Debian's Chromium (a test tool's own browser download cannot
# work on a closed network). Installs it from Debian's packages when it is missing and this user
# may; otherwise says what to do, and the browser test fails with the same message.
set -u
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium: not installed, installing Debian's package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; }
fi
if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(chromium --version 2>/dev/null | head -n 1)"
  exit 0
fi
echo "chromium: not installed; the viewer's browser test needs it (apt-get install chromium)" >&2
# Not fatal here: the e2e run reports the browser test's failure with the rest.
exit 0
