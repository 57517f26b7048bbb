#!/usr/bin/env bash
# Refreshes the console's copy of GOV.UK Frontend (hub/console/static/govuk/) from npm:
# the built CSS and JS, the fonts and images, and a PROVENANCE naming the tarball and each file.
# `make govuk-frontend` runs it; GOVUK_FRONTEND_VERSION picks a version (default: newest 6.x).
set -euo pipefail
spec="govuk-frontend@${GOVUK_FRONTEND_VERSION:-6}"
here="$(cd "$(dirname "$0")/.." && pwd)"
target="$here/hub/console/static/govuk"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

tarball="$(cd "$work" && npm pack --silent "$spec" | tail -1)"
version="$(tar -xOzf "$work/$tarball" package/package.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')"
tar -xzf "$work/$tarball" -C "$work"
built="$work/package/dist/govuk"

# LICENSE.txt is not in the npm tarball; the copy here (from the GitHub repository) is kept
find "$target" -mindepth 1 ! -name LICENSE.txt -delete 2>/dev/null || true
mkdir -p "$target/assets"
cp "$built/govuk-frontend.min.js" "$target/"
cp -r "$built/assets/fonts" "$built/assets/images" "$built/assets/manifest.json" "$target/assets/"
# the stylesheet names its fonts and images at /assets/...; the console serves them under its own path
sed 's#url(/assets/#url(/console/static/govuk/assets/#g' "$built/govuk-frontend.min.css" > "$target/govuk-frontend.min.css"

{
  echo "# origin @ version, path in the npm tarball, sha256 of the file here"
  echo "npm:$tarball sha256 $(sha256sum "$work/$tarball" | cut -d' ' -f1) (govuk-frontend $version, github.com/alphagov/govuk-frontend)"
  echo "# govuk-frontend.min.css: url(/assets/ rewritten to url(/console/static/govuk/assets/ (the sha256 is of the rewritten file)"
  echo "# LICENSE.txt: alphagov/govuk-frontend LICENSE.txt on GitHub (MIT, not in the npm tarball)"
  (cd "$target" && find . -type f ! -name PROVENANCE | sort | while read -r f; do
    f="${f#./}"
    case "$f" in
      LICENSE.txt) src="LICENSE.txt (GitHub)" ;;
      assets/*) src="package/dist/govuk/$f" ;;
      *) src="package/dist/govuk/$f" ;;
    esac
    echo "govuk-frontend @ $version, $src, sha256 $(sha256sum "$f" | cut -d' ' -f1)"
  done)
} > "$target/PROVENANCE"
echo "GOV.UK Frontend $version in $target"
