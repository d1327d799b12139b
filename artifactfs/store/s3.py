"""Blobs in an S3-compatible bucket (AWS, MinIO, Ceph, SeaweedFS): the scale-out ``BlobStore``.

Named ``s3://BUCKET/PREFIX``. The endpoint, region and credentials come from the standard AWS
configuration alone (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and ``~/.aws``), read by boto3, so that the same
deployment works against any of them with nothing of artifactfs's own to configure.

Layout under the prefix::

    blobs/<hex[:2]>/<hex>            the bytes, hex = MD5 of the bytes
    chunks/<hex[:2]>/<hex>.idx       the chunk index of blobs larger than one chunk
    uploads/<hex>/<token>            an upload in progress (never read as a blob)

The chunk index is an object of its own beside the blob, as in the folder store, rather than
object metadata or a database row: S3 metadata is limited to 2 KB (an index holds 32 bytes per
MiB, 320 KB for a 10 GiB blob), a row would tie the blob store to the metadata database (a
bucket copied or shared stays readable by chunk), and the index is written before the blob is
made visible, so a visible blob always has one.

A blob becomes visible only by a copy, inside the bucket, from an upload whose bytes were
checked: a PUT to its final name carries the blob's own MD5 as Content-MD5 (storage refuses
other bytes), and an upload by a client goes to a name of its own under ``uploads/`` that only
the server makes visible, after checking it (``finish_upload``). Why the copy, and not a client
PUT to the final name: an entity that only knows a digest must not gain access to a blob
another entity stored by claiming it uploaded it; the upload's name is a secret the server
handed to the uploader alone.

boto3, the AWS SDK, because it is the reference client every S3-compatible store is tested
against: signature version 4, presigning, multipart uploads, retries with backoff, the
standard configuration chain; a client of our own would have to redo each of them.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import boto3.exceptions
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig

from artifactfs.core.chunks import CHUNK_SIZE, BytesLike, ChunkIndex
from artifactfs.core.digests import ContentDigest, ContentHasher, blob_key
from artifactfs.core.errors import (
    ArtifactFSError,
    DigestMismatch,
    InvalidName,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RegistryUnavailable,
)
from artifactfs.files import READ_BLOCK
from artifactfs.store.blobstore import (
    BatchTooLarge,
    BlobSink,
    BlobStore,
    ByteStream,
    StoredBlob,
    UploadPart,
    UploadPlan,
)

__all__ = ["MULTIPART_PART", "SINGLE_PUT_MAX", "S3BlobStore"]

log = logging.getLogger(__name__)

SINGLE_PUT_MAX = 8 << 20
"""Largest blob a client uploads in one presigned PUT; a larger one goes in parts. One PUT is
one round trip and storage checks its Content-MD5; parts let a large blob go up in parallel
and be retried piecewise."""
MULTIPART_PART = 8 << 20
"""Size of each part of a multipart upload (S3's least is 5 MiB but for the last; at most
10,000 parts, so a blob past 78 GiB gets larger parts). A multiple of the chunk size."""
_MAX_PARTS = 10_000
# HEADs and GETs a store runs at once (a commit asks the size of every blob it names; a batch
# reads up to 128 small blobs): the connection pool is as large, so none waits for a socket
_PARALLEL = 16
# a blob received by the server (not uploaded by presigned URL) is kept in memory up to this
# size, then on disk, until its digest is checked
_SPOOL_IN_MEMORY = 8 << 20
_T = TypeVar("_T")
# what storage answers when the parts a client uploaded cannot be joined: the client's fault
_CLIENT_FAULTS = frozenset({"EntityTooSmall", "InvalidPart", "InvalidPartOrder", "BadDigest",
                            "InvalidDigest"})


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` -> (bucket, prefix without slashes at its ends); InvalidName
    for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise InvalidName(f"blob store {url!r} is not of the form s3://BUCKET/PREFIX")
    return parts.netloc, parts.path.strip("/")


class S3BlobStore(BlobStore):
    """A bucket (and a prefix in it) holding the blobs; thread-safe (boto3's clients are)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.description = f"s3://{bucket}/{self.prefix}"
        if client is None:
            client = boto3.session.Session().client("s3", config=botocore.config.Config(
                signature_version="s3v4",
                max_pool_connections=_PARALLEL * 2,
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=10, read_timeout=60,
            ))
        self._s3 = client
        self._pool = ThreadPoolExecutor(max_workers=_PARALLEL, thread_name_prefix="s3")
        self._transfer = TransferConfig(multipart_threshold=64 << 20,
                                        multipart_chunksize=MULTIPART_PART, max_concurrency=4)
        self._closed = threading.Event()

    @classmethod
    def from_url(cls, url: str) -> S3BlobStore:
        """The store ``s3://BUCKET/PREFIX`` names, checked to be usable (``check_bucket``):
        every command that opens one (``serve``, ``gc``, ``migrate``, the embedded CLI and
        SDK on ``ARTIFACTFS_BLOBS``) refuses a wrong bucket or key at once, before it
        writes anything anywhere."""
        bucket, prefix = parse_s3_url(url)
        store = cls(bucket, prefix)
        try:
            store.check_bucket()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def endpoint(self) -> str:
        """The address of storage in use (from AWS_ENDPOINT_URL or the region), for
        messages: it holds no credential."""
        return str(self._s3.meta.endpoint_url)

    def check_bucket(self) -> None:
        """Check that the bucket exists and these credentials may list it under the prefix:
        one LIST of at most one name, cheap at any size of bucket.

        Why at start: a wrong key or bucket would otherwise surface only at the first
        request a server answers (a 503 to a client, a warning in a log nobody reads), and
        SeaweedFS makes a missing bucket on the first PUT, so a typo in ``--blobs`` would
        quietly start a new, empty registry. A LIST rather than HeadBucket: its error
        answers carry a code (HeadBucket's have no body, a bare 403 or 404), which tells a
        wrong secret from an unknown key from a policy's refusal. Listing is a right a
        registry needs anyway (gc lists; without it a HEAD of a missing blob is a 403).

        Raises NotFound (no such bucket), PermissionDenied (unknown access key, wrong
        secret key, access refused), InvalidName (a bucket name storage cannot take),
        RegistryUnavailable (no credentials, storage unreachable or failing). Each message
        is one line that says what to check; none holds a secret.
        """
        where = f"blob storage {self.description} at {self.endpoint}"
        try:
            self._s3.list_objects_v2(Bucket=self.bucket, MaxKeys=1,
                                     Prefix=f"{self.prefix}/" if self.prefix else "")
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            raise _bucket_refusal(where, self.bucket, code, status) from None
        except botocore.exceptions.NoCredentialsError:
            raise RegistryUnavailable(
                f"{where}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)") from None
        except botocore.exceptions.PartialCredentialsError as exc:
            raise RegistryUnavailable(f"{where}: incomplete AWS credentials ({exc})") from None
        except botocore.exceptions.ParamValidationError:
            raise InvalidName(f"{where}: {self.bucket!r} is not a valid bucket name"
                              ) from None
        except (botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectTimeoutError) as exc:
            raise RegistryUnavailable(
                f"{where} cannot be reached ({type(exc).__name__}): is AWS_ENDPOINT_URL "
                f"right, and is storage running?") from None
        except botocore.exceptions.BotoCoreError as exc:  # timeouts, a broken answer
            raise RegistryUnavailable(f"{where} failed a listing of the bucket "
                                      f"({type(exc).__name__})") from None

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=False)

    # ---- names ------------------------------------------------------------------------------

    def _name(self, kind: str, rest: str) -> str:
        return f"{self.prefix}/{kind}/{rest}" if self.prefix else f"{kind}/{rest}"

    def _blob_name(self, digest: str) -> str:
        key = blob_key(digest)
        return self._name("blobs", f"{key[:2]}/{key}")

    def _index_name(self, digest: str) -> str:
        key = blob_key(digest)
        return self._name("chunks", f"{key[:2]}/{key}.idx")

    def _upload_name(self, digest: str, token: str) -> str:
        return self._name("uploads", f"{blob_key(digest)}/{token}")

    # ---- calls ------------------------------------------------------------------------------

    def _call(self, what: str, func: Callable[..., _T], **kwargs: Any) -> _T:
        """One S3 call; NotFound for a missing object, RegistryUnavailable when storage cannot
        be reached or fails (after boto3's own retries). Never says more of the request than
        ``what``: no URL, no credential."""
        try:
            return func(Bucket=self.bucket, **kwargs)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload"):
                raise NotFound(f"{what}: not found") from None
            if code == "InvalidRange":
                raise NotFound(f"{what}: range past the end") from None
            if code in _CLIENT_FAULTS:  # what a client uploaded is wrong, not storage
                raise InvalidRequest(f"{what}: storage refused it ({code})") from None
            log.warning("blob storage %s refused %s: %s (HTTP %s)", self.description, what,
                        code, status)
            raise RegistryUnavailable(
                f"blob storage {self.description} refused {what}: {code or status}") from None
        except (botocore.exceptions.BotoCoreError, boto3.exceptions.Boto3Error) as exc:
            # connection refused, timeouts, no credentials, a managed transfer that failed:
            # the message names no secret
            log.warning("blob storage %s failed %s: %s", self.description, what,
                        type(exc).__name__)
            raise RegistryUnavailable(
                f"blob storage {self.description} cannot be reached ({what}): "
                f"{type(exc).__name__}") from None

    def _parallel(self, func: Callable[[str], _T], items: Iterable[str]) -> dict[str, _T]:
        wanted = list(dict.fromkeys(items))
        if len(wanted) <= 1:
            return {d: func(d) for d in wanted}
        return dict(zip(wanted, self._pool.map(func, wanted), strict=True))

    # ---- reading ----------------------------------------------------------------------------

    def size(self, digest: str) -> int:
        head = self._call(f"HEAD of blob {digest}", self._s3.head_object,
                          Key=self._blob_name(digest))
        return int(head["ContentLength"])

    def size_and_md5(self, digest: str) -> tuple[int, str | None]:
        head = self._call(f"HEAD of blob {digest}", self._s3.head_object,
                          Key=self._blob_name(digest))
        etag = str(head.get("ETag", "")).strip('"').lower()
        # a multipart object's ETag is the MD5 of its parts' MD5s, with "-N": not the blob's
        return int(head["ContentLength"]), etag if len(etag) == 32 and "-" not in etag else None

    def has(self, digest: str) -> bool:
        try:
            self.size(digest)
        except NotFound:
            return False
        return True

    def sizes(self, digests: Iterable[str]) -> dict[str, int | None]:
        def one(digest: str) -> int | None:
            try:
                return self.size(digest)
            except NotFound:
                return None

        return self._parallel(one, digests)

    def _get(self, digest: str, start: int, end: int | None) -> Any:
        ranged = {} if start == 0 and end is None else {
            "Range": f"bytes={start}-{'' if end is None else end - 1}"}
        return self._call(f"GET of blob {digest}", self._s3.get_object,
                          Key=self._blob_name(digest), **ranged)["Body"]

    def read(self, digest: str, start: int = 0, end: int | None = None) -> bytes:
        if end is not None and end <= start:
            self.size(digest)  # NotFound for a blob not stored, as for any other range
            return b""
        try:
            body = self._get(digest, start, end)
        except NotFound:
            if start and self.has(digest):  # a range past the end: nothing, as from a file
                return b""
            raise NotFound(f"blob {digest} not found") from None
        try:
            return bytes(self._read_body(digest, body))
        finally:
            body.close()

    def _read_body(self, digest: str, body: Any) -> bytes:
        try:
            return bytes(body.read())
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise RegistryUnavailable(f"blob storage {self.description}: reading blob "
                                      f"{digest} failed: {type(exc).__name__}") from None

    def open_range(self, digest: str, start: int, end: int) -> ByteStream:
        if end <= start:
            raise NotFound(f"blob {digest}: empty range")
        return _Body(self._get(digest, start, end))

    def read_many(
        self, digests: Iterable[str], *, max_bytes: int | None = None
    ) -> list[bytes | None]:
        wanted = list(digests)
        if max_bytes is not None:
            total = sum(s for s in self.sizes(wanted).values() if s is not None)
            if total > max_bytes:
                raise BatchTooLarge(f"blobs of a batch exceed {max_bytes} bytes")

        def one(digest: str) -> bytes | None:
            try:
                return self.read(digest)
            except NotFound:
                return None

        found = self._parallel(one, wanted)
        return [found[d] for d in wanted]

    def chunk_index(self, digest: str) -> ChunkIndex | None:
        try:
            body = self._call(f"GET of chunk index {digest}", self._s3.get_object,
                              Key=self._index_name(digest))["Body"]
            try:
                return ChunkIndex.from_bytes(self._read_body(digest, body))
            finally:
                body.close()
        except NotFound:
            pass
        if self.size(digest) <= CHUNK_SIZE:  # NotFound when the blob is not here either
            return None
        log.warning("blob %s in %s has no chunk index; building it again", digest,
                    self.description)
        found = self._hash_object(self._blob_name(digest), f"blob {digest}")
        if found.digest != digest or found.chunk_index is None:
            raise DigestMismatch(f"blob {digest} is damaged: its bytes have digest "
                                 f"{found.digest}")
        try:
            self._put_index(digest, found.chunk_index)
        except RegistryUnavailable as exc:  # read-only credentials: built again next time
            log.warning("could not keep the chunk index of blob %s: %s", digest, exc)
        return found.chunk_index

    def keys(self) -> Iterator[str]:
        return (blob.digest for blob in self.listing())

    def listing(self) -> Iterator[StoredBlob]:
        """One LIST request per 1,000 blobs, which carries each one's size and LastModified
        (no HEAD per blob)."""
        paginator = self._s3.get_paginator("list_objects_v2")
        start = self._name("blobs", "")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", ()):
                    name = str(item["Key"]).rsplit("/", 1)[-1]
                    try:
                        raw = bytes.fromhex(name)
                    except ValueError:
                        continue
                    if len(raw) == 16:
                        yield StoredBlob(base64.b64encode(raw).decode("ascii"),
                                         int(item["Size"]), item["LastModified"].timestamp())
        except (botocore.exceptions.BotoCoreError,
                botocore.exceptions.ClientError) as exc:
            raise RegistryUnavailable(f"blob storage {self.description}: listing failed: "
                                      f"{type(exc).__name__}") from None

    def stats(self, digests: Iterable[str]) -> dict[str, StoredBlob | None]:
        def one(digest: str) -> StoredBlob | None:
            try:
                head = self._call(f"HEAD of blob {digest}", self._s3.head_object,
                                  Key=self._blob_name(digest))
            except NotFound:
                return None
            return StoredBlob(digest, int(head["ContentLength"]),
                              head["LastModified"].timestamp())

        return self._parallel(one, digests)

    def delete(self, digests: Sequence[str]) -> None:
        """DeleteObjects, 500 blobs (1,000 names with their indexes) a request; every blob
        of a request goes before its index, as one request's deletions have no order."""
        wanted = list(dict.fromkeys(digests))
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            for names in ([self._blob_name(d) for d in batch],
                          [self._index_name(d) for d in batch]):
                answer = self._call(f"removal of {len(batch)} blobs", self._s3.delete_objects,
                                    Delete={"Objects": [{"Key": n} for n in names],
                                            "Quiet": True})
                errors = [e for e in answer.get("Errors", ())
                          if e.get("Code") not in ("NoSuchKey", "404")]
                if errors:
                    raise RegistryUnavailable(
                        f"blob storage {self.description} refused to remove "
                        f"{len(errors)} objects ({errors[0].get('Code')})")

    # ---- writing (through the server) -----------------------------------------------------------

    def writer(self, digest: str) -> BlobSink:
        return _SpooledWriter(self, digest)

    def _put_index(self, digest: str, index: ChunkIndex) -> None:
        data = index.to_bytes()
        self._call(f"PUT of chunk index {digest}", self._s3.put_object,
                   Key=self._index_name(digest), Body=data,
                   ContentMD5=base64.b64encode(_md5(data)).decode("ascii"))

    def _publish_file(self, digest: str, result: ContentDigest, file: Any) -> None:
        """Make checked bytes (a local file, positioned at 0) the visible blob: its index
        first, then the bytes under their MD5 (storage checks a single PUT's Content-MD5)."""
        if result.chunk_index is not None:
            self._put_index(digest, result.chunk_index)
        name = self._blob_name(digest)
        if result.size <= self._transfer.multipart_threshold:
            self._call(f"PUT of blob {digest}", self._s3.put_object, Key=name, Body=file,
                       ContentMD5=digest, ContentLength=result.size)
        else:  # in parts, from bytes checked here already
            self._call(f"upload of blob {digest}", self._upload_fileobj, Key=name, file=file)

    def _upload_fileobj(self, *, Bucket: str, Key: str, file: Any) -> None:
        self._s3.upload_fileobj(file, Bucket, Key, Config=self._transfer)

    # ---- uploads straight to storage ----------------------------------------------------------

    def presign_get(self, digest: str, *, lifetime: int) -> str | None:
        return str(self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._blob_name(digest)},
            ExpiresIn=lifetime))

    def start_upload(self, digest: str, size: int, *, lifetime: int) -> UploadPlan:
        token = secrets.token_urlsafe(18)
        name = self._upload_name(digest, token)
        if size <= SINGLE_PUT_MAX:
            url = self._s3.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": name, "ContentMD5": digest},
                ExpiresIn=lifetime)
            return UploadPlan(token, [UploadPart(0, str(url), 0, size,
                                                 {"Content-MD5": digest})])
        part_size = MULTIPART_PART
        while -(-size // part_size) > _MAX_PARTS:
            part_size *= 2
        started = self._call(f"start of an upload of blob {digest}",
                             self._s3.create_multipart_upload, Key=name)
        upload_id = str(started["UploadId"])
        parts = []
        for number, start in enumerate(range(0, size, part_size), 1):
            url = self._s3.generate_presigned_url(
                "upload_part", Params={"Bucket": self.bucket, "Key": name,
                                       "UploadId": upload_id, "PartNumber": number},
                ExpiresIn=lifetime)
            parts.append(UploadPart(number, str(url), start, min(size, start + part_size)))
        return UploadPlan(f"{token}.{upload_id}", parts)

    def finish_upload(self, digest: str, upload_id: str) -> ContentDigest:
        token, _, s3_upload = upload_id.partition(".")
        if len(token) != 24 or not all(c.isalnum() or c in "-_" for c in token):
            raise InvalidRequest(f"upload id {upload_id!r} was not made by this registry")
        name = self._upload_name(digest, token)
        what = f"upload of blob {digest}"
        try:
            if s3_upload:
                try:
                    self._complete(name, s3_upload, what)
                except (NotFound, InvalidRequest, RegistryUnavailable):
                    self._abort_parts(name, s3_upload)
                    raise
            result = self._check_upload(digest, name, what, single=not s3_upload)
            if result.chunk_index is not None:
                self._put_index(digest, result.chunk_index)
            # the copy is the one step that makes the blob visible
            self._call(f"copy of blob {digest}", self._copy, Key=self._blob_name(digest),
                       source=name)
        finally:
            try:
                self._call(f"removal of an {what}", self._s3.delete_object, Key=name)
            except (NotFound, RegistryUnavailable) as exc:
                log.info("upload %s of blob %s left behind: %s", token, digest, exc)
        return result

    def _abort_parts(self, name: str, s3_upload: str) -> None:
        """Drop the parts of a multipart upload that will never be joined (storage keeps,
        and bills, them until told)."""
        try:
            self._call("abort of a multipart upload", self._s3.abort_multipart_upload,
                       Key=name, UploadId=s3_upload)
        except (NotFound, RegistryUnavailable) as exc:
            log.info("parts of an abandoned upload left behind: %s", exc)

    def _complete(self, name: str, s3_upload: str, what: str) -> None:
        """Join the parts storage holds (as storage lists them: a client's word on them is
        not needed, the bytes are checked next)."""
        listed = self._call(f"parts of the {what}", self._s3.list_parts, Key=name,
                            UploadId=s3_upload)
        parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]}
                 for p in listed.get("Parts", ())]
        if not parts:
            raise NotFound(f"{what}: no part arrived")
        self._call(f"completion of the {what}", self._s3.complete_multipart_upload,
                   Key=name, UploadId=s3_upload, MultipartUpload={"Parts": parts})

    def _check_upload(self, digest: str, name: str, what: str, *, single: bool
                      ) -> ContentDigest:
        """What the upload holds, checked against ``digest``. A single PUT of a blob of one
        chunk or less needs no reading back: storage checked its Content-MD5, and its ETag
        (the hex MD5 of a plain PUT) says so again; anything larger is read back, to check it
        and to build its chunk index. Raises DigestMismatch on other bytes."""
        if single:
            head = self._call(f"HEAD of the {what}", self._s3.head_object, Key=name)
            size = int(head["ContentLength"])
            if size <= CHUNK_SIZE and str(head.get("ETag", "")).strip('"') == blob_key(digest):
                return ContentDigest(digest, size, None)
        found = self._hash_object(name, what)
        if found.digest != digest:
            raise DigestMismatch(f"{what}: its bytes have digest {found.digest}, not "
                                 f"{digest}; discarded")
        return found

    def _hash_object(self, name: str, what: str) -> ContentDigest:
        body = self._call(f"GET of the {what}", self._s3.get_object, Key=name)["Body"]
        hasher = ContentHasher()
        try:
            while block := body.read(READ_BLOCK):
                hasher.update(block)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise RegistryUnavailable(f"blob storage {self.description}: reading the {what} "
                                      f"failed: {type(exc).__name__}") from None
        finally:
            body.close()
        return hasher.result()

    def _copy(self, *, Bucket: str, Key: str, source: str) -> None:
        # boto3's managed copy: one CopyObject, or a multipart copy past 5 GiB
        self._s3.copy({"Bucket": Bucket, "Key": source}, Bucket, Key, Config=self._transfer)


def _bucket_refusal(where: str, bucket: str, code: str, status: int) -> ArtifactFSError:
    """What storage's refusal of the start check means, and what to do about it."""
    if code == "NoSuchBucket" or (status == 404 and not code):
        return NotFound(f"{where}: there is no bucket {bucket!r}; create it first (as "
                        f"'aws s3 mb s3://{bucket}' does) or name another in --blobs")
    if code == "InvalidAccessKeyId":
        return PermissionDenied(f"{where} does not know the access key in use "
                                f"(InvalidAccessKeyId); check AWS_ACCESS_KEY_ID or the profile")
    if code == "SignatureDoesNotMatch":
        return PermissionDenied(f"{where} refused the secret key in use "
                                f"(SignatureDoesNotMatch); check AWS_SECRET_ACCESS_KEY or the "
                                f"profile")
    if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
        return PermissionDenied(f"{where}: access denied ({code or status}); the credentials "
                                f"must be allowed to list, read, write and delete under the "
                                f"prefix")
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
        return InvalidName(f"{where}: the bucket is in another region ({code}); set "
                           f"AWS_REGION to its region")
    if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
        return RegistryUnavailable(f"{where} failed a listing of the bucket "
                                   f"({code or status}); try again when storage is back")
    return PermissionDenied(f"{where} refused a listing of the bucket ({code or status})")


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


class _Body:
    """An S3 response body as a ``ByteStream``: storage failures become RegistryUnavailable."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int = -1, /) -> bytes:
        try:
            return bytes(self._body.read(None if size < 0 else size))
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise RegistryUnavailable(f"blob storage read failed: {type(exc).__name__}"
                                      ) from None

    def close(self) -> None:
        self._body.close()


class _SpooledWriter(BlobSink):
    """A blob received by the server for a bucket: hashed and spooled (memory, then a
    temporary file) until its digest is checked, then put in the bucket. Nothing reaches the
    bucket before the check."""

    def __init__(self, store: S3BlobStore, digest: str) -> None:
        self._store = store
        self.digest = digest
        self._hasher = ContentHasher()
        self._spool: Any = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115

    def write(self, data: BytesLike) -> None:
        self._hasher.update(data)
        self._spool.write(data)

    def commit(self) -> ContentDigest:
        result = self._hasher.result()
        if result.digest != self.digest:
            raise DigestMismatch(
                f"blob bytes have digest {result.digest}, not the promised {self.digest}"
            )
        self._spool.seek(0)
        self._store._publish_file(self.digest, result, self._spool)
        return result

    def abort(self) -> None:
        self._spool.close()
