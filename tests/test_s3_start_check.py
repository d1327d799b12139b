"""Blobs in a bucket are checked when a store opens: a wrong secret key, an unknown access key,
no credentials, a bucket that is not there, an endpoint with nothing listening. Each is one
``error:`` line and a non-zero exit from ``serve``, ``gc``, ``migrate`` and the embedded
CLI, before anything is written, with no traceback and no secret in the output.

SeaweedFS makes a missing bucket on the first PUT, so the missing-bucket tests name a bucket
never used and then ask storage (HeadBucket) that it is still not there: a command that went
on to write would have made it.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import time
from pathlib import Path

import botocore.exceptions
import pytest
from helpers import ARTIFACTFS, free_port, stop_process
from seaweed import SeaweedS3

from artifactfs.core.errors import NotFound, PermissionDenied
from artifactfs.store import Store
from artifactfs.store.s3 import S3BlobStore

_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")
# what a refused start may take at most: one LIST, or a connection refused three times
# with botocore's standard back-off (under 4 s), plus the interpreter's start
_REFUSED_WITHIN = 30.0


def _clean_env(seaweed: SeaweedS3, **aws: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ARTIFACTFS_", "AWS_"))}
    return {**env, **seaweed.env, "AWS_EC2_METADATA_DISABLED": "true", **aws}


def _missing_bucket() -> str:
    return f"afs-never-{secrets.token_hex(5)}"


def _bucket_exists(seaweed: SeaweedS3, bucket: str) -> bool:
    try:
        seaweed.client().head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False
        raise
    return True


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _run_refused(args: list[str], env: dict[str, str], *, port: int | None = None
                 ) -> tuple[int, str]:
    """Run ``artifactfs ARGS``, which must exit on its own; its status and what it printed
    (stdout and stderr). A ``serve`` that starts listening on ``port`` instead fails the
    test at once, and is stopped by its pid."""
    proc = subprocess.Popen([ARTIFACTFS, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + _REFUSED_WITHIN
        while proc.poll() is None:
            if port is not None and _listening(port):
                pytest.fail(f"artifactfs {args[0]} started instead of refusing")
            if time.monotonic() > deadline:
                pytest.fail(f"artifactfs {args[0]} neither started nor exited in "
                            f"{_REFUSED_WITHIN:.0f} s")
            time.sleep(0.05)
        out, err = proc.communicate(timeout=10)
    finally:
        stop_process(proc)
    return proc.returncode, out + err


def _one_error_line(output: str, *wanted: str, secrets_: tuple[str, ...],
                    server_log: bool = False) -> str:
    """The one ``error:`` line ``output`` must be (with ``server_log``, the last line, after
    lines of serve's own log, which starts before the store is opened)."""
    lines = output.strip().splitlines()
    if server_log:
        assert all(_LOG_LINE.match(line) for line in lines[:-1]), output
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for text in wanted:
        assert text in lines[0], output
    assert "Traceback" not in output
    for secret in secrets_:
        assert secret not in output
    return lines[0]


def _serve(tmp_path: Path, blobs: str, env: dict[str, str]) -> tuple[int, str, int]:
    port = free_port()
    code, output = _run_refused(
        ["serve", "--db", f"sqlite:///{tmp_path / 'registry.sqlite3'}", "--blobs", blobs,
         "--port", str(port)], env, port=port)
    return code, output, port


FAULTS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    # fault: (environment changes, an empty value removing the variable; words the error
    # line must hold)
    "wrong secret key": ({"AWS_SECRET_ACCESS_KEY": "wrong-" + secrets.token_urlsafe(18)},
                         ("refused the secret key", "AWS_SECRET_ACCESS_KEY")),
    "unknown access key": ({"AWS_ACCESS_KEY_ID": "afsunknown" + secrets.token_hex(4)},
                           ("does not know the access key", "AWS_ACCESS_KEY_ID")),
    "no credentials": ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
                       ("no AWS credentials found",)),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_serve_refuses_credentials_that_do_not_work(
        tmp_path: Path, seaweed: SeaweedS3, s3_url: str, fault: str) -> None:
    changes, wanted = FAULTS[fault]
    env = {k: v for k, v in _clean_env(seaweed, **changes).items() if v}
    code, output, _ = _serve(tmp_path, s3_url, env)
    assert code != 0
    line = _one_error_line(output, *wanted, server_log=True,
                           secrets_=(seaweed.secret_key, *filter(None, changes.values())))
    assert seaweed.endpoint in line  # where it asked
    # storage was asked before the database was made or touched
    assert not (tmp_path / "registry.sqlite3").exists()


def test_serve_refuses_a_bucket_that_is_not_there(
        tmp_path: Path, seaweed: SeaweedS3) -> None:
    bucket = _missing_bucket()
    code, output, _ = _serve(tmp_path, f"s3://{bucket}/registry", _clean_env(seaweed))
    assert code != 0
    _one_error_line(output, f"there is no bucket {bucket!r}", f"s3 mb s3://{bucket}",
                    secrets_=(seaweed.secret_key,), server_log=True)
    assert not _bucket_exists(seaweed, bucket)


def test_serve_refuses_an_endpoint_with_nothing_listening(
        tmp_path: Path, seaweed: SeaweedS3, s3_url: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, output, _ = _serve(tmp_path, s3_url, _clean_env(seaweed, AWS_ENDPOINT_URL=nowhere))
    assert code != 0
    _one_error_line(output, nowhere, "cannot be reached", "AWS_ENDPOINT_URL",
                    secrets_=(seaweed.secret_key,), server_log=True)
    assert time.monotonic() - started < _REFUSED_WITHIN


def test_gc_refuses_a_bucket_that_is_not_there(tmp_path: Path, seaweed: SeaweedS3) -> None:
    bucket = _missing_bucket()
    code, output = _run_refused(
        ["gc", "--grace", "0", "--db", f"sqlite:///{tmp_path / 'registry.sqlite3'}",
         "--blobs", f"s3://{bucket}/registry"], _clean_env(seaweed))
    assert code != 0
    _one_error_line(output, f"there is no bucket {bucket!r}", secrets_=(seaweed.secret_key,))
    assert not _bucket_exists(seaweed, bucket)


def test_migrate_refuses_a_wrong_secret_before_it_writes_the_target(
        tmp_path: Path, seaweed: SeaweedS3, s3_url: str) -> None:
    Store(tmp_path / "src").db.close()
    wrong = "wrong-" + secrets.token_urlsafe(18)
    target = tmp_path / "target.sqlite3"
    code, output = _run_refused(
        ["migrate", "--from", str(tmp_path / "src"), "--db", f"sqlite:///{target}",
         "--blobs", s3_url], _clean_env(seaweed, AWS_SECRET_ACCESS_KEY=wrong))
    assert code != 0
    _one_error_line(output, "refused the secret key", secrets_=(seaweed.secret_key, wrong))
    assert not target.exists()  # the blob store is checked before the target gets a schema


def test_a_push_to_a_bucket_that_is_not_there_makes_no_bucket(
        tmp_path: Path, seaweed: SeaweedS3) -> None:
    """The embedded CLI on a store named by its parts (ARTIFACTFS_DB, ARTIFACTFS_BLOBS):
    without the check, SeaweedFS would take the blob's PUT and make the bucket."""
    bucket = _missing_bucket()
    (tmp_path / "data.txt").write_bytes(b"some bytes\n")
    env = {**_clean_env(seaweed), "HOME": str(tmp_path / "home"),
           "ARTIFACTFS_CACHE_DIR": str(tmp_path / "cache"),
           "ARTIFACTFS_DB": f"sqlite:///{tmp_path / 'registry.sqlite3'}",
           "ARTIFACTFS_BLOBS": f"s3://{bucket}/registry"}
    code, output = _run_refused(["push", str(tmp_path / "data.txt"), "proj/data",
                                 "--type", "dataset"], env)
    assert code != 0
    _one_error_line(output, f"there is no bucket {bucket!r}", secrets_=(seaweed.secret_key,))
    assert not _bucket_exists(seaweed, bucket)


def test_the_check_in_process(seaweed: SeaweedS3, s3_url: str,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``S3BlobStore.from_url`` passes a good bucket and prefix (an empty prefix too) and
    raises the errors the CLI prints for bad ones."""
    for name, value in seaweed.env.items():
        monkeypatch.setenv(name, value)
    for url in (s3_url, f"s3://{seaweed.bucket}"):
        S3BlobStore.from_url(url).close()
    with pytest.raises(NotFound, match="there is no bucket"):
        S3BlobStore.from_url(f"s3://{_missing_bucket()}/p")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + secrets.token_urlsafe(18))
    with pytest.raises(PermissionDenied, match="SignatureDoesNotMatch"):
        S3BlobStore.from_url(s3_url)
