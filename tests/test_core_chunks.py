"""The chunk index and the one-pass content hasher (artifactfs.core.chunks / digests)."""

from __future__ import annotations

import hashlib
import random
import struct

import pytest

from artifactfs.core.chunks import CHUNK_SIZE, ChunkIndex, ChunkSpan, chunk_count
from artifactfs.core.digests import ContentHasher, md5_b64
from artifactfs.core.errors import InvalidManifest

SMALL = 64  # a chunk size that keeps the tests quick


def _data(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def _pieces(data: bytes, sizes: list[int]) -> list[bytes]:
    """Cut ``data`` into pieces of the given sizes, repeated until it is used up."""
    out, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.append(data[pos : pos + size])
        pos += size
        i += 1
    return out


def _hash(data: bytes, sizes: list[int] | None = None, chunk_size: int = SMALL):
    hasher = ContentHasher(chunk_size)
    for piece in _pieces(data, sizes) if sizes else [data]:
        hasher.update(piece)
    return hasher.result()


def _expected_hashes(data: bytes, chunk_size: int) -> tuple[bytes, ...]:
    return tuple(
        hashlib.sha256(data[i : i + chunk_size]).digest() for i in range(0, len(data), chunk_size)
    )


def test_chunk_size_is_one_mib() -> None:
    assert CHUNK_SIZE == 1 << 20


@pytest.mark.parametrize(
    ("size", "count"),
    [(0, 0), (1, 1), (SMALL - 1, 1), (SMALL, 1), (SMALL + 1, 2), (2 * SMALL, 2),
     (2 * SMALL + 1, 3)],
)
def test_chunk_count(size: int, count: int) -> None:
    assert chunk_count(size, SMALL) == count


def test_chunk_count_default_size() -> None:
    assert chunk_count(CHUNK_SIZE) == 1
    assert chunk_count(CHUNK_SIZE + 1) == 2


@pytest.mark.parametrize(
    "sizes",
    [[1], [7], [63], [64], [65], [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144], [200], [127, 1]],
)
def test_hasher_gives_the_same_result_for_any_piece_sizes(sizes: list[int]) -> None:
    data = _data(1000)
    whole = _hash(data)
    cut = _hash(data, sizes)
    assert cut.digest == whole.digest == md5_b64(data)
    assert cut.size == whole.size == 1000
    assert cut.chunk_index is not None and whole.chunk_index is not None
    assert cut.chunk_index.hashes == _expected_hashes(data, SMALL)
    assert cut.chunk_index == whole.chunk_index
    assert cut.chunk_index.to_bytes() == whole.chunk_index.to_bytes()


def test_hasher_accepts_memoryviews() -> None:
    data = _data(300)
    hasher = ContentHasher(SMALL)
    view = memoryview(data)
    hasher.update(view[:33])
    hasher.update(view[33:250])
    hasher.update(view[250:])
    result = hasher.result()
    assert result.digest == md5_b64(data)
    assert result.chunk_index is not None
    assert result.chunk_index.hashes == _expected_hashes(data, SMALL)


def test_chunk_boundaries_are_exact() -> None:
    data = _data(3 * SMALL + 5)
    index = _hash(data, [17]).chunk_index
    assert index is not None
    assert index.chunk_size == SMALL
    assert index.size == len(data)
    assert index.count == 4
    assert [index.bounds(n) for n in range(4)] == [
        (0, 64), (64, 128), (128, 192), (192, 197)
    ]
    for n in range(4):
        start, end = index.bounds(n)
        assert index.check(n, data[start:end])
    with pytest.raises(IndexError):
        index.bounds(4)
    with pytest.raises(IndexError):
        index.bounds(-1)


def test_default_chunk_size_boundaries() -> None:
    data = _data(2 * CHUNK_SIZE + 3, seed=1)
    result = _hash(data, [999_983, 4096, 1], chunk_size=CHUNK_SIZE)
    assert result.digest == md5_b64(data)
    index = result.chunk_index
    assert index is not None
    assert index.count == 3
    assert index.bounds(0) == (0, CHUNK_SIZE)
    assert index.bounds(1) == (CHUNK_SIZE, 2 * CHUNK_SIZE)
    assert index.bounds(2) == (2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 3)
    assert index.hashes == _expected_hashes(data, CHUNK_SIZE)
    assert ContentHasher().result().chunk_index is None  # default is CHUNK_SIZE too


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL])
def test_no_index_for_one_chunk_or_less(size: int) -> None:
    data = _data(size)
    result = _hash(data, [5])
    assert result.chunk_index is None
    assert result.size == size
    assert result.digest == md5_b64(data)


@pytest.mark.parametrize("size", [SMALL + 1, 2 * SMALL, 2 * SMALL + 1])
def test_index_for_more_than_one_chunk(size: int) -> None:
    data = _data(size)
    result = _hash(data, [3, 61])
    assert result.chunk_index is not None
    assert result.chunk_index.count == chunk_count(size, SMALL)
    assert result.chunk_index.hashes == _expected_hashes(data, SMALL)
    last_start, last_end = result.chunk_index.bounds(result.chunk_index.count - 1)
    assert last_end == size
    assert result.chunk_index.check(result.chunk_index.count - 1, data[last_start:])


def test_empty_blob() -> None:
    result = ContentHasher(SMALL).result()
    assert result.size == 0
    assert result.digest == md5_b64(b"")
    assert result.chunk_index is None


def test_content_digest_key_is_hex_md5() -> None:
    data = _data(100)
    assert _hash(data).key == hashlib.md5(data).hexdigest()


# ---- check ------------------------------------------------------------------------------


def _index(data: bytes) -> ChunkIndex:
    index = _hash(data).chunk_index
    assert index is not None
    return index


def test_check_rejects_a_flipped_byte() -> None:
    data = _data(2 * SMALL + 10)
    index = _index(data)
    for n in range(index.count):
        start, end = index.bounds(n)
        chunk = bytearray(data[start:end])
        assert index.check(n, bytes(chunk))
        for pos in (0, len(chunk) // 2, len(chunk) - 1):
            bad = bytearray(chunk)
            bad[pos] ^= 0x01
            assert not index.check(n, bytes(bad))


def test_check_rejects_a_wrong_length() -> None:
    data = _data(2 * SMALL + 10)
    index = _index(data)
    assert not index.check(0, data[: SMALL - 1])
    assert not index.check(0, data[: SMALL + 1])
    assert not index.check(2, data[2 * SMALL : -1])
    assert not index.check(2, data[2 * SMALL :] + b"\x00")
    assert not index.check(0, b"")


def test_check_rejects_another_chunk() -> None:
    data = _data(3 * SMALL)
    index = _index(data)
    assert not index.check(1, data[:SMALL])
    assert not index.check(0, data[SMALL : 2 * SMALL])
    with pytest.raises(IndexError):
        index.check(3, data[:SMALL])


def test_check_accepts_memoryview() -> None:
    data = _data(2 * SMALL)
    index = _index(data)
    assert index.check(1, memoryview(data)[SMALL:])


# ---- wire form --------------------------------------------------------------------------


def test_wire_form_round_trips() -> None:
    data = _data(5 * SMALL + 1)
    index = _index(data)
    raw = index.to_bytes()
    assert raw[:8] == b"AFCHIDX1"
    assert struct.unpack(">QQ", raw[8:24]) == (SMALL, len(data))
    assert len(raw) == 24 + 32 * index.count
    assert raw[24:] == b"".join(_expected_hashes(data, SMALL))
    back = ChunkIndex.from_bytes(raw)
    assert back == index
    assert back.to_bytes() == raw
    assert index.sha256() == hashlib.sha256(raw).hexdigest()
    assert back.sha256() == index.sha256()


def test_index_sha256_changes_with_content() -> None:
    assert _index(_data(200, seed=1)).sha256() != _index(_data(200, seed=2)).sha256()


def _header(chunk_size: int, size: int, magic: bytes = b"AFCHIDX1") -> bytes:
    return struct.pack(">8sQQ", magic, chunk_size, size)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"AFCHIDX1", id="magic-only"),
        pytest.param(_header(64, 100)[:23], id="truncated-header"),
        pytest.param(_header(64, 100, b"AFCHIDX2") + b"\x00" * 64, id="bad-magic"),
        pytest.param(_header(64, 100) + b"\x00" * 63, id="partial-hash"),
        pytest.param(_header(64, 100) + b"\x00" * 65, id="hash-and-a-byte"),
        pytest.param(_header(64, 100) + b"\x00" * 32, id="too-few-hashes"),
        pytest.param(_header(64, 100) + b"\x00" * 96, id="too-many-hashes"),
        pytest.param(_header(64, 0) + b"\x00" * 32, id="hash-for-empty-blob"),
        pytest.param(_header(0, 100) + b"\x00" * 32, id="zero-chunk-size"),
        pytest.param(_header(64, 1 << 40), id="huge-size-no-hashes"),
        pytest.param(b"\x00" * 88, id="zeros"),
    ],
)
def test_malformed_wire_form_raises_invalid_manifest(raw: bytes) -> None:
    with pytest.raises(InvalidManifest):
        ChunkIndex.from_bytes(raw)


def test_truncated_real_index_is_refused() -> None:
    raw = _index(_data(4 * SMALL)).to_bytes()
    for cut in (1, 31, 32, 33, len(raw) - 24):
        with pytest.raises(InvalidManifest):
            ChunkIndex.from_bytes(raw[:-cut])


def test_constructor_checks_the_count() -> None:
    with pytest.raises(InvalidManifest, match="lists 1 chunks for 200 bytes"):
        ChunkIndex(SMALL, 200, (b"\x00" * 32,))
    with pytest.raises(InvalidManifest, match="non-positive chunk size"):
        ChunkIndex(0, 0, ())
    with pytest.raises(InvalidManifest, match="negative size"):
        ChunkIndex(SMALL, -1, ())
    assert ChunkIndex(SMALL, 0, ()).count == 0


# ---- ChunkSpan: the offset arithmetic of every read of a chunked entry ---------------------

def _blob_and_chunks(total: int, chunk: int) -> tuple[bytes, list[bytes]]:
    blob = bytes(i % 251 for i in range(total))
    return blob, [blob[i:i + chunk] for i in range(0, total, chunk)]


@pytest.mark.parametrize(("offset", "size"), [
    (0, 10), (3, 4), (0, 16), (5, 11), (15, 1), (15, 2), (16, 16), (7, 100), (31, 50),
    (0, 1000), (17, 15),
])
def test_a_span_cuts_exactly_the_bytes_asked_for(offset: int, size: int) -> None:
    total, chunk = 40, 16
    blob, chunks = _blob_and_chunks(total, chunk)
    span = ChunkSpan.of(offset, size, total, chunk_size=chunk)
    assert span is not None
    assert (span.first, span.last) == (offset // chunk, (min(total, offset + size) - 1) // chunk)
    got = span.cut(chunks[span.first:span.last + 1])
    assert bytes(got) == blob[offset:offset + size]


def test_a_span_within_one_chunk_is_a_view_of_it_not_a_copy() -> None:
    _, chunks = _blob_and_chunks(40, 16)
    span = ChunkSpan.of(18, 5, 40, chunk_size=16)
    assert span is not None and span.count == 1
    got = span.cut([chunks[1]])
    assert isinstance(got, memoryview) and got.obj is chunks[1]


@pytest.mark.parametrize(("offset", "size"), [(40, 1), (41, 5), (10, 0), (-1, 4)])
def test_nothing_to_read_is_no_span(offset: int, size: int) -> None:
    assert ChunkSpan.of(offset, size, 40, chunk_size=16) is None


def test_a_span_given_the_wrong_number_of_chunks_refuses() -> None:
    span = ChunkSpan.of(5, 20, 40, chunk_size=16)
    assert span is not None and span.count == 2
    with pytest.raises(ValueError):
        span.cut([b"x" * 16])
