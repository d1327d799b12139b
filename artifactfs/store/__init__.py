"""The registry's store: metadata (SQLite) and blobs behind one interface (``BlobStore``): a
content-addressed folder by default, an S3 bucket (``store.s3``, imported only when used,
since it loads boto3) at scale."""

from artifactfs.store.blobs import BlobDir
from artifactfs.store.blobstore import BlobStore
from artifactfs.store.metadata import MetadataDB
from artifactfs.store.store import Store

__all__ = ["BlobDir", "BlobStore", "MetadataDB", "Store"]
