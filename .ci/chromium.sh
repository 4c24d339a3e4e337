#!/usr/bin/env bash
# Studio's browser tests drive the distribution's headless Chromium (never a
# browser that playwright downloads).  Install Debian's chromium and
# chromium-driver when they are missing and we may (root or sudo without a
# password); otherwise say so, and those tests skip with that reason.
set -u
[ -x /usr/bin/chromium ] && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "chromium is not installed and this user cannot apt-get install it:" \
             "Studio's browser tests will skip" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null; then
    echo "no apt-get here: install chromium yourself for Studio's browser tests" >&2
    exit 0
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
