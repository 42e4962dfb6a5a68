#!/usr/bin/env bash
# Build dist/heroku-audit-trail_<version>_<arch>.deb with dpkg-deb: the package and its
# vendored dependencies (orjson is compiled: the .deb is per architecture and built for the
# python3 that runs this script — build it on the Debian release you install it on) under
# /usr/lib/heroku-audit-trail, the command in /usr/bin, the examples in /usr/share/doc.
# Usage: bash packaging/build_deb.sh [OUT_DIR]     (env PYTHON: the interpreter to build with)
set -euo pipefail
root_dir=$(cd "$(dirname "$0")/.." && pwd)
out_dir=${1:-$root_dir/dist}
python=${PYTHON:-python3}

version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root_dir/plugin/heroku_audit_trail/__init__.py")
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/heroku-audit-trail"

"$python" -m pip install --quiet --no-compile --target "$pkg/usr/lib/heroku-audit-trail" "$root_dir"
rm -rf "$pkg/usr/lib/heroku-audit-trail/bin"

install -d "$pkg/usr/bin" "$pkg/usr/share/doc/heroku-audit-trail/examples" "$pkg/DEBIAN"
# The wrapper finds its library relative to itself, so an extracted copy also runs.
cat > "$pkg/usr/bin/heroku-audit-trail" <<'WRAPPER'
#!/bin/sh
lib="$(dirname "$(readlink -f "$0")")/../lib/heroku-audit-trail"
exec "${HEROKU_AUDIT_PYTHON:-/usr/bin/python3}" -I -c \
    'import sys; sys.path.insert(0, sys.argv.pop(1)); from heroku_audit_trail.cli import run; run()' \
    "$lib" "$@"
WRAPPER
chmod 0755 "$pkg/usr/bin/heroku-audit-trail"
cp "$root_dir"/examples/* "$pkg/usr/share/doc/heroku-audit-trail/examples/"
cp "$root_dir/README.md" "$pkg/usr/share/doc/heroku-audit-trail/"
find "$pkg/usr" -type d -exec chmod 0755 {} +
find "$pkg/usr/lib" "$pkg/usr/share" -type f -exec chmod 0644 {} +

installed_kb=$(du -sk "$pkg/usr" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: heroku-audit-trail
Version: $version
Architecture: $arch
Maintainer: heroku-audit-trail developers <dev@heroku-audit-trail.invalid>
Depends: python3 (>= 3.10)
Section: admin
Priority: optional
Installed-Size: $installed_kb
Description: Heroku Enterprise audit trail as ECS JSON lines for Vector and Fluent Bit
 heroku-audit-trail poll prints the Heroku Enterprise audit-trail events that are new since
 its last run as one ECS JSON object per line, for a log shipper's exec input.
CONTROL

mkdir -p "$out_dir"
deb="$out_dir/heroku-audit-trail_${version}_${arch}.deb"
dpkg-deb --build --root-owner-group "$pkg" "$deb" >/dev/null
echo "$deb"
