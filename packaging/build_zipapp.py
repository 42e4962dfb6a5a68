"""Build dist/heroku-audit-trail.pyz: one file that runs with `python3 heroku-audit-trail.pyz`.

orjson is a compiled extension and Python cannot import one from inside a zip, so the archive
carries the package and its dependencies under lib/ and, on first start, extracts them once
into a per-build cache directory (as shiv does). The .pyz is therefore specific to the Python
version and CPU it was built with. Usage: python3 packaging/build_zipapp.py [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipapp
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs inside the archive. Kept to the standard library and small on purpose.
BOOTSTRAP = """\
import os, shutil, sys, tempfile, zipfile
from pathlib import Path

BUILD_ID = "{build_id}"


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = Path(base) / "heroku-audit-trail"
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return root
    except OSError:  # no writable home (a service user): fall back to a private temp dir
        root = Path(tempfile.gettempdir()) / f"heroku-audit-trail-{{os.getuid()}}"
        root.mkdir(mode=0o700, exist_ok=True)
        return root


def unpacked():
    target = cache_root() / f"pyz-{{BUILD_ID}}"
    if not target.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
        with zipfile.ZipFile(os.path.dirname(os.path.abspath(__file__))) as archive:
            for member in archive.namelist():
                if member.startswith("lib/"):
                    archive.extract(member, staging)
        try:
            os.rename(staging / "lib", target)  # atomic: a concurrent run uses either copy
        except OSError:
            pass
        shutil.rmtree(staging, ignore_errors=True)
    return target


sys.path.insert(0, str(unpacked()))
from heroku_audit_trail.cli import run  # noqa: E402

run()
"""


def build(out: Path, python: str = sys.executable) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "app"
        lib = stage / "lib"
        pip = [python, "-m", "pip", "install", "--quiet", "--no-compile"]
        subprocess.run([*pip, "--target", str(lib), str(ROOT)], check=True)
        digest = hashlib.sha256()
        for path in sorted(lib.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(lib)).encode())
                digest.update(path.read_bytes())
        (stage / "__main__.py").write_text(BOOTSTRAP.format(build_id=digest.hexdigest()[:16]))
        out.parent.mkdir(parents=True, exist_ok=True)
        zipapp.create_archive(stage, out, interpreter="/usr/bin/env python3", compressed=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "heroku-audit-trail.pyz")
    args = parser.parse_args()
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
