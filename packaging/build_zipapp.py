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
# zipfile, shutil, tempfile and compileall are imported only where needed: a warm start
# (the usual one) pays for none of them.
import os, stat, sys
from pathlib import Path

BUILD_ID = "{build_id}"


def trusted_parents(path):
    # Every directory above `path` must be ours or root's and not writable by others unless
    # sticky (like /tmp), as ssh checks: else someone could rename ours and put theirs in
    # its place after our check, before Python imports a module from it.
    for parent in Path(os.path.realpath(path)).parents:
        try:
            status = os.stat(parent)
        except OSError:
            return False
        if status.st_uid not in (0, os.getuid()):
            return False
        if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not status.st_mode & stat.S_ISVTX:
            return False
    return True


def private(path):
    # path as a directory that only this user can write, created if missing; None when it
    # is a symlink, not a directory, someone else's, writable by group or others, or below
    # a directory others could swap it out of: another local user could have planted code
    # there for us to import.
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        status = os.lstat(path)
    except OSError:
        return None
    if (
        stat.S_ISLNK(status.st_mode)
        or not stat.S_ISDIR(status.st_mode)
        or status.st_uid != os.getuid()
        or status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        or not trusted_parents(path)
    ):
        return None
    return path


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        Path(base).mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        pass
    if private(Path(base) / "heroku-audit-trail") is not None:
        return Path(base) / "heroku-audit-trail"
    # A service user has no writable home: a private directory of its own under /tmp.
    import tempfile

    fallback = Path(tempfile.gettempdir()) / f"heroku-audit-trail-{{os.getuid()}}"
    return fallback if private(fallback) is not None else None


def extract(into):
    import compileall, zipfile

    with zipfile.ZipFile(os.path.dirname(os.path.abspath(__file__))) as archive:
        for member in archive.namelist():
            if member.startswith("lib/"):
                archive.extract(member, into)
    # Compiled once here, so every later start loads bytecode even where writing it is off
    # (PYTHONDONTWRITEBYTECODE) or the directory is not writable.
    compileall.compile_dir(str(into / "lib"), quiet=2)
    for folder, _, _ in os.walk(into):  # whatever the umask: writable by us alone
        os.chmod(folder, 0o700)
    return into / "lib"


def scratch_copy():
    # Unpacked for this run only, in a fresh private directory, removed at exit.
    import atexit, shutil, tempfile

    scratch = Path(tempfile.mkdtemp(prefix="heroku-audit-trail-"))
    if not trusted_parents(scratch):
        sys.stderr.write(
            "heroku-audit-trail: no private place to unpack the zipapp (the temporary "
            "directory can be written by others); set XDG_CACHE_HOME or TMPDIR to a "
            "directory of your own\\n"
        )
        raise SystemExit(73)
    atexit.register(shutil.rmtree, scratch, True)
    return extract(scratch)


def whole(target):
    # An unpacked copy is put in place by one rename, so it is whole when it is there; an
    # empty or partial one (left by an older version whose unpack failed) is not.
    return (target / "heroku_audit_trail" / "cli.py").is_file()


def unpacked():
    root = cache_root()
    if root is None:  # nowhere safe to keep it: unpack for this run only
        return scratch_copy()
    target = root / f"pyz-{{BUILD_ID}}"
    import shutil, tempfile

    if os.path.lexists(target) and not whole(target) and private(target) is not None:
        # Ours, but not whole: moved aside (a rename, so no run imports from half of it).
        aside = Path(tempfile.mkdtemp(prefix=".broken-", dir=root))
        try:
            os.rename(target, aside / "lib")
        except OSError:
            pass
        shutil.rmtree(aside, ignore_errors=True)
    if not os.path.lexists(target):
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
        try:
            lib = extract(staging)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)  # a failed unpack leaves nothing
            sys.stderr.write(
                f"heroku-audit-trail: cannot unpack the zipapp into {{root}}: "
                f"{{error.strerror or error}}; free some space there (or set XDG_CACHE_HOME "
                "to a directory with room) and run it again\\n"
            )
            raise SystemExit(73)
        try:
            os.rename(lib, target)  # atomic: a concurrent run uses either copy
        except OSError:
            pass  # another run put its copy there first
        shutil.rmtree(staging, ignore_errors=True)
    # In our own directory, yet not ours (or not whole): never import from it.
    if not os.path.isdir(target) or private(target) is None or not whole(target):
        return scratch_copy()
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
        digest = hashlib.sha256(BOOTSTRAP.encode())  # a new way of unpacking, a new copy
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
