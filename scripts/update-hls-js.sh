#!/usr/bin/env bash
# Re-vendors hls.js (the browser HLS player the viewer page uses where the browser has no
# native HLS) from the npm registry: `npm pack` of the exact VERSION, then its
# dist/hls.min.js and LICENSE copied into src/http/assets/vendor/ (built into the binary by
# src/http/page.rs). Prints the package's and the files' sha256 so the commit can cite
# them, and updates the version comment in src/http/page.rs.
#
#   scripts/update-hls-js.sh 1.7.4
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:?usage: scripts/update-hls-js.sh VERSION (e.g. 1.7.4)}"
case "$version" in
  [0-9]*.[0-9]*.[0-9]*) ;;
  *) echo "VERSION must be an exact version like 1.7.4, not a range or tag" >&2; exit 2 ;;
esac
command -v npm >/dev/null || { echo "npm missing (Debian package npm)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "hls.js@$version" >/dev/null)
tgz="$work/hls.js-$version.tgz"
[ -f "$tgz" ] || { echo "npm pack produced no $tgz" >&2; exit 1; }
tar -xzf "$tgz" -C "$work"
# node comes with npm; the version line is the last key of package.json (no trailing
# comma), so a line-based sed match is fragile.
got="$(node -p 'require(process.argv[1]).version' "$work/package/package.json")"
[ "$got" = "$version" ] || { echo "package.json says $got, wanted $version" >&2; exit 1; }

dest=src/http/assets/vendor
mkdir -p "$dest"
cp "$work/package/dist/hls.min.js" "$dest/hls.min.js"
cp "$work/package/LICENSE" "$dest/hls.js-LICENSE.txt"
# The path carries the version (served with a year's immutable cache), in page.rs and the
# viewer page alike.
sed -i "s|/assets/hls-[0-9][0-9.]*\.min\.js|/assets/hls-$version.min.js|" src/http/page.rs src/http/assets/index.html
grep -q "/assets/hls-$version.min.js" src/http/assets/index.html \
  || { echo "could not update the hls.js path in src/http/assets/index.html" >&2; exit 1; }
sed -i "s/^\/\/! hls\.js version: .*/\/\/! hls.js version: $version (npm, \`scripts\/update-hls-js.sh $version\`)/" src/http/page.rs
grep -q "^//! hls.js version: $version " src/http/page.rs \
  || { echo "could not update the version comment in src/http/page.rs" >&2; exit 1; }

echo "hls.js $version"
echo "sha256 $(sha256sum "$tgz" | cut -d' ' -f1)  hls.js-$version.tgz (npm pack)"
(cd "$dest" && sha256sum hls.min.js hls.js-LICENSE.txt | sed 's/^/sha256 /')
