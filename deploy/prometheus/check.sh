#!/bin/sh
# Validate the Prometheus config, the Baton alert rules and their unit tests.
# Usage: deploy/prometheus/check.sh   (from anywhere; PROMTOOL=/path/to/promtool to override)
# Needs promtool (Debian/Ubuntu: apt-get install prometheus). Exits non-zero on any failure.
set -eu

cd "$(dirname "$0")"

PROMTOOL=${PROMTOOL:-promtool}
if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
    echo "check.sh: $PROMTOOL not found (install the prometheus package or set PROMTOOL)" >&2
    exit 127
fi

"$PROMTOOL" --version 2>&1 | head -n 1
"$PROMTOOL" check config prometheus.yml
"$PROMTOOL" check rules baton-rules.yml
"$PROMTOOL" test rules baton-rules.test.yml
echo "check.sh: all Prometheus checks passed"
