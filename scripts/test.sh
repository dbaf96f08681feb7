#!/usr/bin/env bash
# The project's test command: every crate's tests (`cargo test --workspace`, arguments passed
# on), then a summary of the tests that skipped because a tool or service is missing — one line
# per group with the reason — and their count. Exits with cargo's status.
#
# Tests that need Docker or external tools record their skips under the target folder's
# tmp/skipped (see runtime/tests/common/mod.rs); ALKNET_REQUIRE_DOCKER=1 and
# ALKNET_REQUIRE_VALIDATORS=1 (set by CI) turn a skip into a failure.
set -uo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
skips="$target_dir/tmp/skipped"
rm -rf "$skips"

cargo test --workspace "$@"
status=$?

echo
if [ -d "$skips" ] && [ -n "$(ls -A "$skips" 2>/dev/null)" ]; then
  total=0
  for group in "$skips"/*; do
    count=$(wc -l < "$group")
    total=$((total + count))
    # Every line of a group file is `test<TAB>reason`; the reasons of one group are the same
    # missing tool or service, so the first one speaks for the group.
    reason=$(head -n 1 "$group" | cut -f 2-)
    echo "skipped: $count test(s) in $(basename "$group"): $reason"
  done
  echo "skipped tests: $total (passing, but they checked nothing)"
else
  echo "skipped tests: 0"
fi
exit $status
