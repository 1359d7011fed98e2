"""PostgreSQL as a real test peer: a private throwaway cluster, one fresh database per test.

``postgres_url`` (session) is the URL of a superuser's maintenance database: the server named
by ``PACSFLOW_TEST_PG_URL`` when it is set, else a cluster this module makes with Debian's
server binaries (``apt-get install postgresql``): ``initdb`` into a temporary directory, then
``postgres`` listening on a Unix socket in that directory only (``listen_addresses=''``), so
it needs no TCP port and works in the tests' private network namespace. initdb and postgres
refuse to run as root, so under root they run as the ``postgres`` OS user. Durability is off
(fsync, synchronous_commit, full_page_writes): the data is thrown away. The server is shut
down at once at the end of the session, or when the test process dies (parent-death signal).

``pg_database_url`` (function) creates an empty database for one test and drops it after;
the test runs ``upgrade(url)`` or ``metadata.create_all`` itself.
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

#: Read at import: the autouse fixture in tests/conftest.py removes every PACSFLOW_* variable
#: before a test's own fixtures run.
EXTERNAL_URL = os.environ.get("PACSFLOW_TEST_PG_URL", "")

#: The socket lives in the cluster's own directory, so this port number cannot clash.
_PORT = 5432
_SUPERUSER = "postgres"
_names = itertools.count(1)
_PR_SET_PDEATHSIG = 1
#: Looked up before any fork: the child between fork and exec only calls it.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the server process: shut down at once if the test process dies without stopping it."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)


class PostgresError(RuntimeError):
    """The private cluster did not start; the message carries its log."""


def server_bin() -> Path | None:
    """The directory of the newest installed PostgreSQL server binaries, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def postgres_unavailable() -> str | None:
    """Why no PostgreSQL can be had for the tests, or None when one can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver is missing (pip install -e '.[test]')"
    if EXTERNAL_URL:
        return None
    if server_bin() is None:
        return (
            "PostgreSQL is not installed (apt-get install postgresql, or ./scripts/test as "
            "root) and PACSFLOW_TEST_PG_URL is not set"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_SUPERUSER)
        except KeyError:
            return "running as root, but there is no 'postgres' OS user to run the server as"
    return None


class PostgresCluster:
    """One private PostgreSQL server on a Unix socket in its own temporary directory."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # Under /tmp, not TMPDIR: the postgres user must reach it, and a socket path is short.
        self.directory = Path(tempfile.mkdtemp(prefix="pacsflow-pg-", dir="/tmp"))
        self.data = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None
        # Server processes may not run as root: drop to the postgres OS user.
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam(_SUPERUSER)
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the maintenance database."""
        return f"postgresql+psycopg://{_SUPERUSER}@/postgres?host={self.directory}&port={_PORT}"

    def start(self, timeout: float = 30.0) -> None:
        """initdb, start the server and return once it accepts connections."""
        initdb = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                _SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            cwd=self.directory,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            **self._as,
        )
        if initdb.returncode != 0:
            raise PostgresError(f"initdb failed ({initdb.returncode}): {initdb.stderr.strip()}")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data),
                    "-k",
                    str(self.directory),
                    "-p",
                    str(_PORT),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                **self._as,
            )
        deadline = time.monotonic() + timeout
        while not self._accepts():
            if self._process.poll() is not None:
                raise PostgresError(
                    f"postgres exited with {self._process.returncode}" + self._tail()
                )
            if time.monotonic() > deadline:
                self.stop()
                raise PostgresError(f"postgres did not come up within {timeout} s" + self._tail())
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server at once (SIGQUIT: immediate shutdown) and remove its files."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # immediate shutdown
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(
                host=str(self.directory), port=_PORT, user=_SUPERUSER, dbname="postgres"
            ):
                return True
        except psycopg.OperationalError:
            return False

    def _tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "; its log:\n" + "\n".join(text.splitlines()[-lines:])


def database_url(server_url: str, name: str) -> str:
    """The URL of database name on the server of server_url."""
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A superuser's URL to the maintenance database of a running PostgreSQL server."""
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    if EXTERNAL_URL:
        yield EXTERNAL_URL
        return
    bindir = server_bin()
    assert bindir is not None
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped after it; its URL."""
    name = f"test_{os.getpid()}_{next(_names)}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(postgres_url, name)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
