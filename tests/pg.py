"""A private PostgreSQL cluster for the tests, from Debian's ``postgresql`` package.

The cluster is made with ``initdb`` in a temporary folder under /tmp, listens on a free
loopback port and keeps its unix socket in that folder, so it never meets a system
instance (none is started or touched). The server binaries are found under
``/usr/lib/postgresql/<major>/bin``, the newest major present (15 on Debian 12, 17 on
Debian 13), never by an assumed number.

PostgreSQL refuses to run as root. As root (the project's `make test`), the cluster runs as
``nobody``: a user every Debian system has, that owns nothing else, so no user needs to be
made by the install script; its folder is handed to it and removed afterwards. As any other
user it runs as that user.

``postgres`` is started directly (``subprocess.Popen`` with ``user=``), so the pid held is
the postmaster's own: it is stopped by that pid with SIGINT (what ``pg_ctl stop -m fast``
sends), then SIGKILL if it has not exited within 20 s. ``stop_server`` and ``start_server``
stop it and start it again on the same folder and port, keeping the data: an outage, for the
tests of a server whose database goes away and comes back. Durability is off (``fsync``,
``synchronous_commit``, ``full_page_writes``): the cluster lives for one test session and
the tests are about behaviour, not crash safety, and it makes a CREATE DATABASE and each
commit several times faster on a shared disk.

Each test gets a database of its own, copied from a template database that was upgraded to
the head revision once (``CREATE DATABASE ... TEMPLATE``: about 20 ms).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from helpers import free_port

TEMPLATE = "afs_template"
_counter = itertools.count()


def postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<major>/bin`` with initdb and postgres in it.

    Raises RuntimeError naming the install script when there is none.
    """
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        major = initdb.parent.parent.name
        if re.fullmatch(r"\d+", major) and (initdb.parent / "postgres").exists():
            found.append((int(major), initdb.parent))
    if not found:
        raise RuntimeError("PostgreSQL's server is not installed (no "
                           "/usr/lib/postgresql/*/bin/initdb): run scripts/install-system-deps.sh")
    return max(found)[1]


class PgCluster:
    """One private PostgreSQL cluster: started in ``__init__``, stopped by ``stop``."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.base = Path(tempfile.mkdtemp(prefix="artifactfs-pg-", dir="/tmp"))
        self.data = self.base / "data"
        self.port = free_port()
        self.log = self.base / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.base, nobody.pw_uid, nobody.pw_gid)
            self._as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(self.base)}

    def _start(self) -> None:
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", "afs", "--auth=trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True, timeout=120, cwd=self.base, env=self._env(),
            **self._as,
        )
        self.start_server()
        self._make_template()

    @property
    def running(self) -> bool:
        """Whether the postmaster is up (started, and neither stopped nor dead)."""
        return self.proc is not None and self.proc.poll() is None

    def start_server(self) -> None:
        """Start the postmaster on the cluster's folder and port, and wait until it takes
        connections; after ``stop_server``, the same cluster again with its data."""
        assert not self.running, "the postmaster is running already"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.base), "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=300"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.base, env=self._env(),
                **self._as,
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text()[-2000:]}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=afs dbname={database}"

    def url(self, database: str, *, password: str | None = None) -> str:
        """``postgresql://afs@127.0.0.1:PORT/DATABASE`` (trust: any password is taken)."""
        user = f"afs:{password}" if password else "afs"
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def _make_template(self) -> None:
        from sqlalchemy.engine import make_url

        from artifactfs.store.database import create_db_engine, upgrade_database

        self.admin(f"CREATE DATABASE {TEMPLATE}")
        engine = create_db_engine(make_url(self.url(TEMPLATE)).set(
            drivername="postgresql+psycopg"))
        try:
            upgrade_database(engine)
        finally:
            engine.dispose()  # a template may have no session open on it when it is copied

    def new_database(self, *, empty: bool = False) -> str:
        """A new database's name: at the head revision, or with ``empty`` no schema at all."""
        name = f"afs_test_{os.getpid()}_{next(_counter)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {'template0' if empty else TEMPLATE}")
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop_server(self) -> None:
        """Stop the postmaster by its pid (fast shutdown: every session is ended; then
        SIGKILL after 20 s), keeping its folder for ``start_server``."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)

    def stop(self) -> None:
        """Stop the postmaster by its pid (fast shutdown, then SIGKILL), remove the folder."""
        self.stop_server()
        # the backends exit with the postmaster; none outlives the folder's removal
        with contextlib.suppress(OSError):
            shutil.rmtree(self.base)
