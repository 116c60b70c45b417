#!/usr/bin/env bash
# Fails if library code (src/, outside test modules) calls `.unwrap()`: input-derived data must
# be handled with errors, never panics. `.expect("…")` is allowed only for invariants the code
# itself guarantees, and each such message must say why it holds; they are listed for review.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
while IFS= read -r f; do
  # Test modules: `tests.rs` files and files under a module's `tests/` folder.
  case "$f" in */tests.rs | */tests/*) continue ;; esac
  # Stop at the first #[cfg(test)]: unit tests live at the bottom of each file.
  hits=$(awk '/#\[cfg\(test\)\]/{exit} /\.unwrap\(\)/ && !/^[[:space:]]*\/\//{print FILENAME":"NR": "$0}' "$f")
  if [ -n "$hits" ]; then
    echo "$hits"
    status=1
  fi
done < <(find src -name '*.rs')
if [ "$status" -ne 0 ]; then
  echo "error: .unwrap() in library code (handle the error instead)" >&2
  exit 1
fi
echo "invariant expects in library code:"
find src -name '*.rs' ! -name tests.rs ! -path '*/tests/*' -print0 |
  xargs -0 awk '/#\[cfg\(test\)\]/{nextfile} /\.expect\(/{print "  "FILENAME":"FNR": "$0}' || true
