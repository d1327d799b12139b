"""``artifactfs serve`` binds its port before it says it serves: a port in use or an
address that is not this machine's is one line naming the option to change."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import httpx
from helpers import ARTIFACTFS, stop_process, wait_until

from artifactfs.store import Store


def serve(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ARTIFACTFS, "serve", "--store", str(store), *args],
                          capture_output=True, text=True, timeout=60)


def test_a_port_in_use_is_one_line_before_any_banner(tmp_path: Path) -> None:
    Store(tmp_path / "store")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = serve(tmp_path / "store", "--port", str(port))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"error: port {port} on 127.0.0.1 is already in use; stop "
                                   "what listens there, or choose another port with --port")


def test_an_address_not_of_this_machine_names_host(tmp_path: Path) -> None:
    Store(tmp_path / "store")
    proc = serve(tmp_path / "store", "--host", "192.0.2.1")  # TEST-NET-1: never ours
    assert proc.returncode == 1 and "serving" not in proc.stderr
    assert proc.stderr.strip().endswith("choose another with --host")
    proc = serve(tmp_path / "store", "--host", "no-such-host.invalid")
    assert proc.returncode == 1 and "--host no-such-host.invalid" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_port_0_serves_on_the_port_it_prints(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    key = store.db.create_key("local")
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([ARTIFACTFS, "serve", "--store", str(tmp_path / "store"),
                                 "--port", "0"], stdout=out, stderr=subprocess.STDOUT)
    try:
        found = wait_until(lambda: re.search(r"on http://127\.0\.0\.1:(\d+)/api/v1",
                                             log.read_text()), timeout=30)
        port = int(found.group(1))
        assert port != 0
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/entities/local/projects",
                           headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert answer.status_code == 200, answer.text
    finally:
        stop_process(proc)
