#!/usr/bin/env bash
# Refreshes the Swagger UI files that /docs serves from the binary (crates/service/assets/
# swagger-ui/) from npm's swagger-ui-dist. Nothing is fetched when the service builds or runs.
#   scripts/update-swagger-ui.sh [version]     (default: the latest 5.x)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-5}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
assets=crates/service/assets/swagger-ui
cp "$work/package/swagger-ui-bundle.js" "$work/package/swagger-ui-bundle.js.LICENSE.txt" \
   "$work/package/LICENSE" "$work/package/NOTICE" "$assets/"
# The style sheet names a source map that is not shipped.
sed 's|/\*# sourceMappingURL=swagger-ui.css.map\*/||' "$work/package/swagger-ui.css" >"$assets/swagger-ui.css"
grep -o '"version": *"[^"]*"' "$work/package/package.json" | sed 's/.*"\([^"]*\)"$/\1/' >"$assets/VERSION"
echo "swagger-ui-dist $(cat "$assets/VERSION") in $assets"
