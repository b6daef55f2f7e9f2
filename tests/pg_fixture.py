"""A throwaway PostgreSQL server for tests of the shared-metadata path.

MLMD's PostgreSQL backend is only trustworthy if it is exercised against a real server, so this
starts the machine's own Debian PostgreSQL (``initdb``/``pg_ctl`` on a temp dir and a free port)
instead of faking one. ``initdb`` refuses to run as root, so when the tests run as root the server
runs as the ``postgres`` system user that the Debian package creates. Password authentication
(scram) is on so the tests prove that the password really travels through ``MLMD_DB_PASSWORD``.

Needs: ``apt-get install -y --no-install-recommends postgresql`` (CI's ``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

APT_HINT = "apt-get install -y --no-install-recommends postgresql"


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    def url(self, dbname: str | None = None) -> str:
        """A password-free URL; the password goes through MLMD_DB_PASSWORD like a real user's."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname or self.dbname}"


def find_pg_bin() -> str:
    """Directory holding initdb/pg_ctl, newest major version first (15 is what CI verifies)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
        reverse=True,
    )
    if candidates:
        return os.path.dirname(candidates[0])
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    raise RuntimeError(f"PostgreSQL server binaries not found; install them with: {APT_HINT}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runner(as_root: bool) -> tuple[list[str], int | None, int | None]:
    """Command prefix and uid/gid to own the data dir: the postgres user when we are root."""
    if not as_root:
        return [], None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(f"running as root but no 'postgres' user exists; {APT_HINT}") from None
    return ["runuser", "-u", "postgres", "--"], pw.pw_uid, pw.pw_gid


@contextlib.contextmanager
def postgres_server(user: str = "mlmd", dbname: str = "mlmd") -> Iterator[PostgresServer]:
    """Start a private PostgreSQL server; stop it and delete its data on exit."""
    bin_dir = find_pg_bin()
    prefix, uid, gid = _runner(os.geteuid() == 0)
    workdir = tempfile.mkdtemp(prefix="mlmd-pg-")
    data_dir = os.path.join(workdir, "data")
    log_file = os.path.join(workdir, "server.log")
    password = secrets.token_urlsafe(16)
    pwfile = os.path.join(workdir, "pw")
    with open(pwfile, "w") as f:
        f.write(password + "\n")
    if uid is not None:
        for path in (workdir, pwfile):
            os.chown(path, uid, gid)
    os.chmod(workdir, 0o700)

    def run(*args: str) -> None:
        proc = subprocess.run(
            [*prefix, *args], cwd=workdir, capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            log = open(log_file).read()[-2000:] if os.path.exists(log_file) else ""
            raise RuntimeError(
                f"{os.path.basename(args[0])} failed ({proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}\n{log}"
            )

    port = _free_port()
    try:
        run(
            f"{bin_dir}/initdb",
            "-D",
            data_dir,
            "-U",
            user,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        )
        run(
            f"{bin_dir}/pg_ctl",
            "-D",
            data_dir,
            "-l",
            log_file,
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
        try:
            yield PostgresServer("127.0.0.1", port, user, password, dbname)
        finally:
            subprocess.run(
                [*prefix, f"{bin_dir}/pg_ctl", "-D", data_dir, "-m", "immediate", "-w", "stop"],
                cwd=workdir,
                capture_output=True,
                timeout=60,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
