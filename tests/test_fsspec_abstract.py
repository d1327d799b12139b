"""fsspec's own abstract tests (fsspec.tests.abstract) on ``artifact://``, where they apply.

They write outside any transaction of their own, so each test runs inside one that the ``fs``
fixture opens and drops at its end (its writes are read back from the transaction's draft,
as a transaction's own reads are). Left out: the copy and move tests, as cp/mv within the
registry are not implemented (a copy is a read and a write), and empty folders, which an
artifact cannot hold (``supports_empty_directories`` False). On the embedded store only:
these test the filesystem's path logic, which test_fsspec.py runs on a server too.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator

import fsspec
import pytest
from fsspec.tests.abstract import AbstractFixtures
from fsspec.tests.abstract.get import AbstractGetTests
from fsspec.tests.abstract.open import AbstractOpenTests
from fsspec.tests.abstract.pipe import AbstractPipeTests
from fsspec.tests.abstract.put import AbstractPutTests

from artifactfs.sdk.fsspec_fs import ArtifactFileSystem


@pytest.mark.parametrize("transport", ["embedded"])
class ArtifactFixtures(AbstractFixtures):  # type: ignore[misc]
    @pytest.fixture
    def fs(self, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[ArtifactFileSystem]:
        for key in [k for k in os.environ if k.startswith("ARTIFACTFS_")]:
            monkeypatch.delenv(key)  # only this test's store
        for key, value in env.items():
            if key.startswith("ARTIFACTFS_"):
                monkeypatch.setenv(key, value)
        fs = fsspec.filesystem("artifact")
        fs.start_transaction()
        try:
            yield fs
        finally:
            fs.transaction.complete(commit=False)
            fs.api.close()
            ArtifactFileSystem.clear_instance_cache()

    @pytest.fixture
    def fs_join(self) -> Callable[..., str]:
        return posixpath.join

    @pytest.fixture
    def fs_path(self) -> str:
        return "proj/dataset/abstract:latest/root"

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False


class TestArtifactGet(AbstractGetTests, ArtifactFixtures):  # type: ignore[misc]
    pass


class TestArtifactPut(AbstractPutTests, ArtifactFixtures):  # type: ignore[misc]
    pass


class TestArtifactPipe(AbstractPipeTests, ArtifactFixtures):  # type: ignore[misc]
    pass


class TestArtifactOpen(AbstractOpenTests, ArtifactFixtures):  # type: ignore[misc]
    pass
