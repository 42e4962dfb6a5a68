#!/usr/bin/env bash
# Build dist/heroku-audit-trail_<version>_<arch>.deb with dpkg-deb: the package and its
# vendored dependencies under /usr/lib/heroku-audit-trail, the command in /usr/bin, a man page
# generated from the real argparse parser, the examples in /usr/share/doc.
#
# orjson and charset_normalizer are compiled for one CPython minor version: the package
# Depends on exactly the python3 minor it was built with (build it on the Debian or Ubuntu
# release you install it on). Usage: bash packaging/build_deb.sh [OUT_DIR]
# (env PYTHON: the interpreter to build with; its minor version must be the target's python3)
set -euo pipefail
root_dir=$(cd "$(dirname "$0")/.." && pwd)
out_dir=${1:-$root_dir/dist}
python=${PYTHON:-python3}

version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root_dir/plugin/heroku_audit_trail/__init__.py")
arch=$(dpkg --print-architecture)
read -r major minor < <("$python" -c 'import sys; print(*sys.version_info[:2])')
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/heroku-audit-trail"
lib="$pkg/usr/lib/heroku-audit-trail"
doc="$pkg/usr/share/doc/heroku-audit-trail"

# A build as root (CI, a container) installs into the staging dir only: no warning about it
# (an environment variable, which a pip older than the option ignores).
PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$python" -m pip install --quiet --no-compile --target "$lib" "$root_dir"
rm -rf "$lib/bin"
find "$lib" -name '*.so' -exec strip --strip-unneeded {} +
find "$lib" -name '*.py' -exec sed -i '1{/^#!/d}' {} +  # library modules, not scripts

install -d "$pkg/usr/bin" "$doc/examples" "$pkg/usr/share/man/man1" "$pkg/DEBIAN"
# The wrapper finds its library relative to itself, so an extracted copy also runs. requests
# is pointed at the system's CA store (kept current by ca-certificates, and where a company
# adds its proxy's CA), not the bundle frozen into the vendored certifi.
cat > "$pkg/usr/bin/heroku-audit-trail" <<'WRAPPER'
#!/bin/sh
lib="$(dirname "$(readlink -f "$0")")/../lib/heroku-audit-trail"
if [ -z "${REQUESTS_CA_BUNDLE:-}" ] && [ -z "${SSL_CERT_FILE:-}" ] \
    && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
    export REQUESTS_CA_BUNDLE
fi
exec "${HEROKU_AUDIT_PYTHON:-/usr/bin/python3}" -I -B -c \
    'import sys; sys.path.insert(0, sys.argv.pop(1)); from heroku_audit_trail.cli import run; run()' \
    "$lib" "$@"
WRAPPER
chmod 0755 "$pkg/usr/bin/heroku-audit-trail"

COLUMNS=80 PYTHONPATH="$lib" "$python" "$root_dir/packaging/manpage.py" "$stage/heroku-audit-trail.1"
gzip -9n -c "$stage/heroku-audit-trail.1" > "$pkg/usr/share/man/man1/heroku-audit-trail.1.gz"

cp -r "$root_dir"/examples/* "$doc/examples/"
gzip -9n -c "$root_dir/README.md" > "$doc/README.md.gz"
install -d "$doc/docs"
for page in "$root_dir"/docs/*.md; do
    gzip -9n -c "$page" > "$doc/docs/$(basename "$page").gz"
done
cat > "$doc/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: heroku-audit-trail
Source: https://github.com/heroku-audit-trail/heroku-audit-trail

Files: *
Copyright: 2026 heroku-audit-trail developers
License: MIT

Files: usr/lib/heroku-audit-trail/requests/* usr/lib/heroku-audit-trail/orjson/*
Copyright: 2011-2026 Kenneth Reitz and contributors, 2018-2026 ijl
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.

Files: usr/lib/heroku-audit-trail/urllib3/* usr/lib/heroku-audit-trail/platformdirs/*
 usr/lib/heroku-audit-trail/charset_normalizer/*
Copyright: 2008-2026 Andrey Petrov and contributors, 2010-2026 platformdirs authors,
 2019-2026 Ahmed TAHRI
License: MIT

Files: usr/lib/heroku-audit-trail/idna/*
Copyright: 2013-2026 Kim Davies
License: BSD-3-Clause
 Redistribution and use in source and binary forms, with or without modification, are
 permitted provided that the following conditions are met:
 1. Redistributions of source code must retain the above copyright notice, this list of
 conditions and the following disclaimer.
 2. Redistributions in binary form must reproduce the above copyright notice, this list of
 conditions and the following disclaimer in the documentation and/or other materials
 provided with the distribution.
 3. Neither the name of the copyright holder nor the names of its contributors may be used
 to endorse or promote products derived from this software without specific prior written
 permission.
 .
 THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY
 EXPRESS OR IMPLIED WARRANTIES ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR
 CONTRIBUTORS BE LIABLE FOR ANY DAMAGES ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE.

Files: usr/lib/heroku-audit-trail/certifi/*
Copyright: 2011-2026 Kenneth Reitz
License: MPL-2.0
 On Debian systems the full text is in /usr/share/common-licenses/MPL-2.0.

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy of this
 software and associated documentation files (the "Software"), to deal in the Software
 without restriction, including without limitation the rights to use, copy, modify, merge,
 publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
 to whom the Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all copies or
 substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
 INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
 PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
 FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
 OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
 DEALINGS IN THE SOFTWARE.
COPYRIGHT
cat > "$stage/changelog.Debian" <<CHANGELOG
heroku-audit-trail ($version-1) unstable; urgency=medium

  * Upstream release $version, built for Python $major.$minor.

 -- heroku-audit-trail developers <dev@heroku-audit-trail.invalid>  $(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")
CHANGELOG
gzip -9n -c "$stage/changelog.Debian" > "$doc/changelog.Debian.gz"
find "$pkg/usr" -type d -exec chmod 0755 {} +
find "$pkg/usr/lib" "$pkg/usr/share" -type f -exec chmod 0644 {} +

installed_kb=$(du -sk "$pkg/usr" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: heroku-audit-trail
Version: $version-1
Architecture: $arch
Maintainer: heroku-audit-trail developers <dev@heroku-audit-trail.invalid>
Depends: python3 (>= $major.$minor~), python3 (<< $major.$((minor + 1))), libc6 (>= 2.17), ca-certificates
Section: admin
Priority: optional
Homepage: https://github.com/heroku-audit-trail/heroku-audit-trail
Installed-Size: $installed_kb
Description: Heroku Enterprise audit trail as ECS JSON lines for Vector and Fluent Bit
 heroku-audit-trail poll prints the Heroku Enterprise audit-trail events
 that are new since its last run as one ECS JSON object per line, for a
 log shipper's exec input. Its state (a small cursor file per account)
 goes to --state-dir; for the vector and fluent-bit service users, use
 /var/lib/heroku-audit-trail.
CONTROL

# Bytecode is compiled at install, for the system's python3, and removed before the files
# are: the interpreter runs with -B, so nothing is left in /usr/lib after a remove.
cat > "$pkg/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && command -v python3 >/dev/null 2>&1; then
    python3 -m compileall -q -f -j 0 /usr/lib/heroku-audit-trail >/dev/null || true
fi
POSTINST
cat > "$pkg/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
find /usr/lib/heroku-audit-trail -depth -type d -name __pycache__ -exec rm -rf {} + 2>/dev/null || true
PRERM
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm"

mkdir -p "$out_dir"
deb="$out_dir/heroku-audit-trail_${version}-1_${arch}.deb"
dpkg-deb --build --root-owner-group "$pkg" "$deb" >/dev/null
echo "$deb"
