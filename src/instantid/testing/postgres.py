"""A throw-away PostgreSQL server for tests and benchmarks: `initdb` + `pg_ctl` in a temporary folder, on a
free loopback port, as an unprivileged user (the `postgres` user when run as root), never a system service.

It needs Debian's `postgresql` package (or any PostgreSQL whose binaries are under /usr/lib/postgresql/*/bin,
on PATH, or in $INSTANTID_PG_BIN). The server listens on 127.0.0.1 only and uses password authentication
(SCRAM), so the URLs it hands out carry a password, as a real deployment's would.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's binaries are missing or the server would not start (the message says which and why)."""


def _bin_dir() -> Path:
    given = os.environ.get("INSTANTID_PG_BIN")
    if given:
        return Path(given)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable("PostgreSQL is not installed (no initdb): `apt-get install postgresql` (Debian) or set "
                              "INSTANTID_PG_BIN to the folder holding initdb and pg_ctl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempPostgres:
    """`with TempPostgres() as pg:` ... `pg.url()` ... (`pg.restart()`, `pg.new_database()`)."""

    user = "instantid"

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.password = secrets.token_hex(12)
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="instantid-pg-"))
        self.data, self.log = self.folder / "data", self.folder / "server.log"
        self._as_user = None
        if os.geteuid() == 0:  # initdb refuses root: run the server as the unprivileged postgres user
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no `postgres` user to run the server as "
                                          "(Debian's postgresql package creates it)") from None
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._as_user = account
        self._databases = 0

    def _run(self, *command: str, timeout: float = 120) -> None:
        def drop_privileges():
            if self._as_user is not None:
                os.setgid(self._as_user.pw_gid)
                os.setuid(self._as_user.pw_uid)

        done = subprocess.run([str(self.bin / command[0]), *command[1:]], capture_output=True, text=True,
                              timeout=timeout, preexec_fn=drop_privileges, cwd=self.folder)
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise PostgresUnavailable(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{log}")

    def start(self) -> "TempPostgres":
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_user is not None:
            os.chown(pwfile, self._as_user.pw_uid, self._as_user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=scram-sha-256", f"--pwfile={pwfile}",
                  "-E", "UTF8", "--no-instructions")
        pwfile.unlink()
        # loopback only, a socket in our folder, small and quick (fsync off: a test server, not a deployment)
        conf = (f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.folder}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\n"
                "max_connections = 100\n")
        with open(self.data / "postgresql.conf", "a") as handle:
            handle.write(conf)
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str, *extra: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *extra)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def restart(self) -> None:
        """`pg_ctl restart` (fast shutdown: every client connection is dropped)."""
        self._pg_ctl("restart", "-m", "fast")

    def pause(self) -> None:
        """The first half of a restart, for observing the outage: `pg_ctl stop -m fast`; `resume()` starts it."""
        self._pg_ctl("stop", "-m", "fast")

    def resume(self) -> None:
        self._pg_ctl("start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = f"test_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def __enter__(self) -> "TempPostgres":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
