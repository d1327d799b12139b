"""The control channel of a real mount against hostile and careless clients.

No client may stop or wedge the daemon: one that hangs up, sends garbage or 100 MB, or
stalls is dropped with one log line, and the mount keeps serving. Other users cannot reach
the socket at all. A save whose client goes away (Ctrl-C, a killed shell) still finishes.
The CLI turns every way the daemon can fail to answer into one line, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fs.conftest import Mount, wait_gone
from fs.test_mount_tree import push
from fs.test_mount_writes import folder_of, versions
from helpers import ARTIFACTFS, wait_until

from artifactfs.fs.control import MAX_CLIENTS, REQUEST_TIMEOUT
from artifactfs.sdk import Api, Artifact


@pytest.fixture
def transport() -> str:
    """The channel is the same whatever the registry: one transport is enough here."""
    return "embedded"


@pytest.fixture
def dataset(api: Api, tmp_path: Path) -> Artifact:
    return push(api, tmp_path, {"a.txt": b"alpha\n"}, aliases=())


def address(mount: Mount) -> str:
    return os.getxattr(mount.path, "user.artifactfs.control").decode()


@contextlib.contextmanager
def connected(mount: Mount, timeout: float = 30.0) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address(mount))
        yield sock
    finally:
        sock.close()


def read_lines(sock: socket.socket) -> list[dict]:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def ask(mount: Mount, body: dict) -> list[dict]:
    with connected(mount) as sock:
        sock.sendall(json.dumps(body).encode() + b"\n")
        return read_lines(sock)


def assert_serving(mount: Mount, run_cli) -> None:
    """The daemon is alive and both its file system and its control channel answer."""
    assert mount.alive(), mount.log_text()
    assert "vision" in os.listdir(mount.path)
    proc = run_cli("status", str(folder_of(mount)))
    assert proc.returncode == 0, proc.stderr
    assert "nothing staged" in proc.stdout


def test_the_socket_is_in_a_private_folder_other_users_cannot_enter(
    dataset: Artifact, mounted: Mount, run_cli
) -> None:
    path = Path(address(mounted))
    assert not str(path).startswith("@")  # no abstract name that /proc/net/unix shows
    assert stat.S_ISSOCK(path.stat().st_mode)
    folder = path.parent.stat()
    assert folder.st_uid == os.getuid() and stat.S_IMODE(folder.st_mode) == 0o700
    # uid 65534 (nobody) can read the name but cannot connect
    probe = subprocess.run(
        ["python3", "-c", "import socket,sys; s=socket.socket(socket.AF_UNIX); "
         "s.connect(sys.argv[1])", str(path)],
        user=65534, capture_output=True, text=True, timeout=30,
    )
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stderr
    assert_serving(mounted, run_cli)


def test_clients_that_hang_up_before_the_answer_do_not_stop_the_daemon(
    dataset: Artifact, mounted: Mount, run_cli
) -> None:
    request = json.dumps({"op": "status", "path": "vision/dataset/mnist:latest"}).encode()
    for i in range(20):
        with connected(mounted) as sock:
            if i % 3 == 0:
                continue  # hang up without a word
            sock.sendall(request + b"\n")
            if i % 3 == 2:  # reset rather than close: the daemon's send fails at once
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    assert_serving(mounted, run_cli)
    assert wait_until(lambda: "hung up" in mounted.log_text())


@pytest.mark.parametrize("line", [
    b"\xff\xfe not even utf-8",
    b"[1, 2, 3]",
    b'{"op": "explode"}',
    b'{"op": "save", "path": 7}',
    b'{"op": "save", "path": "vision/dataset/mnist:latest", "aliases": "x"}',
    b'{"op": "status", "path": "' + b"[" * 100_000 + b'"}',
    b"[" * 200_000,
])
def test_garbage_gets_an_error_answer_and_the_daemon_goes_on(
    dataset: Artifact, mounted: Mount, run_cli, line: bytes
) -> None:
    with connected(mounted) as sock:
        sock.sendall(line + b"\n")
        answers = read_lines(sock)
    assert len(answers) == 1 and answers[0]["ok"] is False, answers
    assert answers[0]["error"]
    assert_serving(mounted, run_cli)


def test_a_hundred_megabytes_without_an_end_of_line_is_dropped(
    dataset: Artifact, mounted: Mount, run_cli
) -> None:
    block = b"x" * (1 << 20)
    with connected(mounted) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(100):
                sock.sendall(block)
        with contextlib.suppress(ConnectionResetError):
            sock.recv(65536)
    assert wait_until(lambda: "no end of line" in mounted.log_text())
    assert_serving(mounted, run_cli)


def test_stalled_clients_neither_wedge_the_channel_nor_stay_forever(
    dataset: Artifact, mounted: Mount, run_cli
) -> None:
    stalled = []
    try:
        stalled.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        stalled[0].connect(address(mounted))
        stalled[0].sendall(b'{"op": "status", ')  # half a request, then nothing
        assert_serving(mounted, run_cli)  # others are served meanwhile
        # more stallers than the channel serves at once: the rest are turned away
        for _ in range(MAX_CLIENTS + 4):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stalled.append(s)
            s.connect(address(mounted))
        assert wait_until(lambda: "turned one away" in mounted.log_text())
        # each staller is dropped once its time is up, and the channel answers again
        stalled[0].settimeout(REQUEST_TIMEOUT + 20)
        answer = stalled[0].recv(65536)
        assert b"no whole request line" in answer
        assert wait_until(lambda: run_cli("status", str(folder_of(mounted))).returncode == 0,
                          timeout=REQUEST_TIMEOUT + 20)
        assert "sent no whole request line" in mounted.log_text()
    finally:
        for s in stalled:
            s.close()
    assert_serving(mounted, run_cli)


def test_a_save_whose_client_hangs_up_at_once_still_commits(
    dataset: Artifact, mounted: Mount, run_cli, api: Api
) -> None:
    folder = folder_of(mounted)
    (folder / "new.txt").write_bytes(b"added\n")
    with connected(mounted) as sock:
        sock.sendall(json.dumps({"op": "save", "path": "vision/dataset/mnist:latest"}).encode()
                     + b"\n")
    assert wait_until(lambda: versions(api) == ["v0", "v1"], timeout=30), versions(api)
    assert wait_until(lambda: "could not be answered" in mounted.log_text())
    assert_serving(mounted, run_cli)  # and nothing is staged any more
    assert (folder / "new.txt").read_bytes() == b"added\n"


def test_a_save_streams_its_upload_progress_before_the_answer(
    dataset: Artifact, mounted: Mount
) -> None:
    folder = folder_of(mounted)
    for i in range(3):
        (folder / f"f{i}.bin").write_bytes(os.urandom(100_000 + i))
    answers = ask(mounted, {"op": "save", "path": "vision/dataset/mnist:latest"})
    *progress, final = answers
    assert final["ok"] is True and final["version"] == "vision/mnist:v1"
    assert progress and all("progress" in p for p in progress)
    uploads = [p["progress"] for p in progress if p["progress"]["phase"] == "upload"]
    assert uploads[-1]["files_done"] == uploads[-1]["files"] == 3
    assert uploads[-1]["bytes_done"] == uploads[-1]["bytes"] == 300_003
    assert progress[-1]["progress"] == {"phase": "commit"}


def _start_save(mount: Mount, env: dict[str, str], size: int) -> subprocess.Popen[str]:
    """``artifactfs save`` of a large staged file, returned once the daemon is uploading."""
    folder = folder_of(mount)
    with open(folder / "big.bin", "wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
    proc = subprocess.Popen([ARTIFACTFS, "save", str(folder)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_until(lambda: "blobs (" in mount.log_text(), timeout=60), mount.log_text()
    return proc


def test_ctrl_c_on_save_says_one_line_and_the_save_finishes(
    dataset: Artifact, mounted: Mount, env: dict[str, str], run_cli, api: Api
) -> None:
    proc = _start_save(mounted, env, 64 << 20)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # the save won the race: it printed its version
        assert out.strip() == "vision/mnist:v1"
    else:
        assert proc.returncode == 130, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "goes on with the save" in err
    assert wait_until(lambda: versions(api) == ["v0", "v1"], timeout=60)
    assert_serving(mounted, run_cli)


def test_a_daemon_killed_during_save_gives_one_line_not_a_traceback(
    dataset: Artifact, mounted: Mount, env: dict[str, str]
) -> None:
    proc = _start_save(mounted, env, 64 << 20)
    os.kill(mounted.pid, signal.SIGKILL)
    assert wait_gone(mounted.pid)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "did not answer" in err and "artifactfs status" in err, err


def test_status_with_nobody_listening_gives_one_line(
    dataset: Artifact, mounted: Mount, run_cli
) -> None:
    Path(address(mounted)).unlink()  # as if the listener were gone
    proc = run_cli("status", str(folder_of(mounted)), timeout=30)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "cannot reach the daemon" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert mounted.alive()
