#!/usr/bin/env bash
# Refresh the vendored Swagger UI that the hub serves at /docs (hub/docs_ui/; docs/api.md "Interactive docs").
#
#   deploy/dev/docs-ui.sh [version]      (make docs-ui; default: the newest 5.x on the npm registry)
#
# Takes swagger-ui-dist from the npm registry with `npm pack` (the tarball's integrity is checked by npm),
# copies only the files the page needs and writes hub/docs_ui/vendored.txt: the package, its version and the
# SHA-256 of each file. tests/test_apidocs.py checks the files against it, so a hand-edited or half-copied
# file fails the tests; commit the files and the manifest together.
set -euo pipefail

here="$(cd "$(dirname "$0")/../.." && pwd)"
dest="$here/hub/docs_ui"
spec="swagger-ui-dist@${1:-5}"
files=(swagger-ui-bundle.js swagger-ui.css LICENSE)

version="$(npm view "$spec" version --json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v[-1] if isinstance(v, list) else v)')"
case "$version" in 5.*) ;; *) echo "swagger-ui-dist $version: the hub's /docs needs 5.x (OpenAPI 3.1)" >&2; exit 1 ;; esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar -xzf swagger-ui-dist-"$version".tgz)

mkdir -p "$dest"
{
  echo "# Swagger UI served at /docs; written by deploy/dev/docs-ui.sh, checked by tests/test_apidocs.py"
  echo "package swagger-ui-dist"
  echo "version $version"
  for f in "${files[@]}"; do
    cp "$work/package/$f" "$dest/$f"
    echo "sha256 $(sha256sum "$dest/$f" | cut -d' ' -f1) $f"
  done
} > "$dest/vendored.txt"
echo "hub/docs_ui: swagger-ui-dist $version"
cat "$dest/vendored.txt"
