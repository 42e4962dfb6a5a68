"""The zipapp and the .deb, built for real and run against the simulator."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import orjson
import pytest

from heroku_audit_trail import __version__
from heroku_audit_trail.simulator import DEMO_TOKEN, Simulator, SimulatorConfig

from .conftest import assert_secret_absent, window_ids

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess

ROOT = Path(__file__).resolve().parent.parent


def poll_env(sim: Simulator, home: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        "HEROKU_API_URL": sim.url,
        "HEROKU_API_KEY": DEMO_TOKEN,
        "HEROKU_ENTERPRISE": "acme",
        "HEROKU_AUDIT_STATE_DIR": str(home / "state"),
        "HEROKU_AUDIT_MIN_INTERVAL": "0",
    }


def check_poll(command: list[str], tmp_path: Path, extra_env: dict[str, str]) -> None:
    """`check`, then `poll`, from the installed or built command, against the simulator."""
    with Simulator(SimulatorConfig(seed=9, events_per_day=25, history_days=1)) as sim:
        env = {**poll_env(sim, tmp_path), **extra_env}
        checked = subprocess.run([*command, "check"], env=env, capture_output=True, timeout=60)
        assert checked.returncode == 0, checked.stderr.decode()
        done = subprocess.run([*command, "poll"], env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        ids = {orjson.loads(line)["event"]["id"] for line in done.stdout.splitlines()}
        assert ids == window_ids(sim)
    assert_secret_absent(DEMO_TOKEN, done.stdout, done.stderr, tmp_path / "state")


@pytest.mark.slow
def test_zipapp_runs_with_a_clean_interpreter(pyz: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-I", str(pyz)]
    version = subprocess.run(
        [*command, "--version"],
        env={"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")},
        capture_output=True,
        check=True,
    )
    assert version.stdout.decode().strip() == f"heroku-audit-trail {__version__}"
    check_poll(command, tmp_path, {})
    (unpacked,) = (tmp_path / "cache" / "heroku-audit-trail").iterdir()
    assert (unpacked / "orjson").is_dir()  # the compiled dependency came out of the zip


def build_id(pyz: Path) -> str:
    with zipfile.ZipFile(pyz) as archive:
        bootstrap = archive.read("__main__.py").decode()
    found = re.search(r'BUILD_ID = "([0-9a-f]+)"', bootstrap)
    assert found
    return found.group(1)


@pytest.mark.slow
@pytest.mark.parametrize("hostile", ["someone-elses", "world-writable", "swappable-parent"])
def test_zipapp_never_imports_from_a_planted_directory(
    pyz: Path, tmp_path: Path, hostile: str
) -> None:
    """A service user without a home unpacks under /tmp: another local user may have made
    the directory first, with code in it for us to run. It must be refused."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o1777)
    tmp.chmod(0o1777)
    marker = tmp_path / "planted-code-ran"
    shared = tmp / f"heroku-audit-trail-{os.getuid()}"
    planted = shared / f"pyz-{build_id(pyz)}" / "heroku_audit_trail"
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    (planted / "cli.py").write_text("def run():\n    print('pwned')\n")
    if hostile == "someone-elses":
        for path in (shared, *shared.rglob("*")):
            os.chown(path, 65534, 65534)  # nobody
        shared.chmod(0o700)
    elif hostile == "world-writable":
        shared.chmod(0o777)
    else:  # ours, but under a directory anyone may rename things in (no sticky bit)
        shared.chmod(0o700)
        tmp.chmod(0o777)
    no_home = tmp_path / "not-a-dir"
    no_home.write_text("")  # nothing can be made under a file, not even by root
    env = {
        "HOME": str(no_home),
        "XDG_CACHE_HOME": str(no_home / "cache"),
        "TMPDIR": str(tmp),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-I", str(pyz), "--version"], env=env, capture_output=True, timeout=60
    )
    assert not marker.exists()
    if hostile == "swappable-parent":  # nowhere private at all: refuse, and say what to do
        assert done.returncode == 73 and b"set XDG_CACHE_HOME or TMPDIR" in done.stderr
        return
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == f"heroku-audit-trail {__version__}"


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb, built once for the tests that read and install it."""
    return build_deb(tmp_path_factory.mktemp("dist"))


def build_deb(out_dir: Path) -> Path:
    """packaging/build_deb.sh with this interpreter; the .deb's path. The build says nothing
    on stderr (no "Running pip as the 'root' user")."""
    built = subprocess.run(
        ["bash", str(ROOT / "packaging" / "build_deb.sh"), str(out_dir)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        check=True,
    )
    assert b"Running pip as the 'root' user" not in built.stderr, built.stderr
    return Path(built.stdout.decode().strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
def test_deb_contents_and_the_extracted_command(tmp_path: Path, deb: Path) -> None:
    info = subprocess.run(["dpkg-deb", "--info", str(deb)], capture_output=True, check=True)
    control = info.stdout.decode()
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    later = f"{sys.version_info[0]}.{sys.version_info[1] + 1}"
    assert f"Version: {__version__}-1" in control
    assert f"Depends: python3 (>= {minor}~), python3 (<< {later}), libc6" in control
    assert "ca-certificates" in control
    contents = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, check=True)
    listing = contents.stdout.decode()
    assert "-rwxr-xr-x root/root" in next(
        line for line in listing.splitlines() if line.endswith("./usr/bin/heroku-audit-trail")
    )
    assert "./usr/lib/heroku-audit-trail/heroku_audit_trail/cli.py" in listing
    assert "./usr/share/doc/heroku-audit-trail/examples/fluent-bit.conf" in listing
    assert "./usr/share/man/man1/heroku-audit-trail.1.gz" in listing
    assert "./usr/share/doc/heroku-audit-trail/copyright" in listing
    assert "./usr/share/doc/heroku-audit-trail/docs/operating.md.gz" in listing
    assert "./usr/share/doc/heroku-audit-trail/changelog.Debian.gz" in listing
    if shutil.which("lintian"):
        lint = subprocess.run(["lintian", str(deb)], capture_output=True, check=False)
        errors = [line for line in lint.stdout.decode().splitlines() if line.startswith("E:")]
        assert errors == [], errors

    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    wrapper = [str(root / "usr" / "bin" / "heroku-audit-trail")]
    # The interpreter the vendored orjson was built for (the .deb's is /usr/bin/python3).
    same_python = {"HEROKU_AUDIT_PYTHON": sys.executable}
    version = subprocess.run(
        [*wrapper, "--version"], env=same_python, capture_output=True, check=True
    )
    assert version.stdout.decode().strip() == f"heroku-audit-trail {__version__}"
    check_poll(wrapper, tmp_path, same_python)


def debian_python_matches() -> bool:
    system = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True,
        check=False,
    )
    return system.stdout.split() == [str(part).encode() for part in sys.version_info[:2]]


def package_installed() -> bool:
    """A heroku-audit-trail package is installed here: the test must not purge someone's."""
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "heroku-audit-trail"],
        capture_output=True,
        check=False,
    )
    return status.stdout.endswith(b" installed")


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("apt-get") is None or not debian_python_matches(),
    reason="needs root, apt-get and a system python3 of this minor version",
)
@pytest.mark.skipif(
    shutil.which("dpkg-query") is not None and package_installed(),
    reason="a heroku-audit-trail package is installed: not purged by a test",
)
def test_deb_installs_with_apt_runs_and_purges(tmp_path: Path, deb: Path) -> None:
    """As an admin would: apt-get install ./the.deb (dpkg checks Depends), the command from
    /usr/bin, then a purge. A copy that wants another python3 is refused at install time."""
    apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-qq", str(deb)], env=apt, check=True)
    try:
        installed = ["/usr/bin/heroku-audit-trail"]
        version = subprocess.run([*installed, "--version"], capture_output=True, check=True)
        assert version.stdout.decode().strip() == f"heroku-audit-trail {__version__}"
        check_poll(installed, tmp_path, {})
        assert list(Path("/usr/lib/heroku-audit-trail").rglob("*.pyc"))  # compiled at install
        subprocess.run(["dpkg", "--remove", "heroku-audit-trail"], env=apt, check=True)
        # Nothing left behind by a remove: no bytecode, no directory dpkg cannot remove.
        assert not Path("/usr/lib/heroku-audit-trail").exists()
    finally:  # removed already, or not: dpkg purges what is left either way
        subprocess.run(["dpkg", "--purge", "heroku-audit-trail"], env=apt, check=True)
    assert not Path("/usr/bin/heroku-audit-trail").exists()

    # The same package wanting another python3: dpkg's Depends check refuses it.
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(unpacked)], check=True)
    control = unpacked / "DEBIAN" / "control"
    control.write_text(
        re.sub(
            r"python3 \(>= [0-9.]+~\), python3 \(<< [0-9.]+\)",
            "python3 (>= 3.99~)",
            control.read_text(),
        )
    )
    wrong = tmp_path / "wrong-python.deb"
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(unpacked), str(wrong)],
        check=True,
        capture_output=True,
    )
    refused = subprocess.run(["apt-get", "install", "-y", str(wrong)], env=apt, capture_output=True)
    assert refused.returncode != 0
    assert b"python3" in refused.stdout + refused.stderr
    assert not Path("/usr/bin/heroku-audit-trail").exists()


@pytest.mark.slow
def test_wheel_and_sdist_build_and_the_sdist_carries_docs_examples_and_tests(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        check=True,
        timeout=600,
    )
    [wheel] = tmp_path.glob("*.whl")
    [sdist] = tmp_path.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        assert "heroku_audit_trail/cli.py" in archive.namelist()
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"README.md", "examples/vector.toml", "examples/fluent-bit.conf"} <= names
    assert {"docs/operating.md", "docs/shippers.md", "docs/development.md"} <= names
    assert {"tests/conftest.py", "tests/golden/ecs.jsonl", "packaging/build_deb.sh"} <= names


def test_a_zipapp_whose_unpack_failed_leaves_nothing_and_recovers(
    pyz: Path, tmp_path: Path
) -> None:
    """The first unpack on a full disk (`ulimit -f` here) says so and leaves nothing behind;
    once there is room it unpacks; a copy left empty by an older version is redone."""
    import resource

    cache = tmp_path / "cache"
    env = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(cache), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-I", str(pyz), "--version"]

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_384, 16_384))

    full = subprocess.run(command, env=env, capture_output=True, timeout=60, preexec_fn=small_files)
    assert full.returncode == 73, full.stderr.decode()
    assert b"cannot unpack the zipapp" in full.stderr and b"Traceback" not in full.stderr
    assert list((cache / "heroku-audit-trail").iterdir()) == []
    target = cache / "heroku-audit-trail" / f"pyz-{build_id(pyz)}"
    for attempt in ("room again", "left empty by an older version"):
        done = subprocess.run(command, env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, (attempt, done.stderr.decode())
        assert done.stdout.decode().strip() == f"heroku-audit-trail {__version__}"
        assert (target / "heroku_audit_trail" / "cli.py").is_file()  # unpacked whole
        shutil.rmtree(target)
        target.mkdir(mode=0o700)
