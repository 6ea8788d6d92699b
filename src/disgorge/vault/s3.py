"""Sealed blobs on S3-compatible object storage (AWS S3, MinIO), through s3fs.

The embedded default keeps the blobs in the workspace folder (:mod:`.blobstore`); a
workspace may instead keep them under a prefix of a bucket (``disgorge init --store
s3://BUCKET/PREFIX --store-endpoint URL``). What differs lives here:

* **The URL and the endpoint** are written to ``config.toml``, so neither may carry a
  secret: one with user information (``s3://KEY:SECRET@bucket``), a query string or a
  fragment (a presigned ``X-Amz-Credential``/``X-Amz-Signature``) is refused before
  anything is written. Credentials come from botocore's usual chain only
  (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_PROFILE``
  and ``~/.aws``, SSO, an instance or container role).
* **Writes** are one PUT of the final key (S3 makes an object visible whole or not at
  all): the local store's temporary-then-rename would, on a versioned bucket, leave a
  version of the temporary behind.
* **Deleting** a blob deletes every version and delete marker of its key
  (``ListObjectVersions``, then ``DeleteObjects`` with each ``VersionId``): on a versioned
  bucket a plain DELETE only adds a delete marker and keeps the ciphertext as a
  noncurrent version. "Overwrite before delete" means nothing here (a PUT makes a new
  object or version; the old bytes are not written over): what the erasure does instead
  is delete every version, and the verifier lists the versions of each erased key to
  prove none is left.
* **Object Lock.** A bucket with Object Lock enabled may hold versions under retention
  or a legal hold (only such a bucket can): they cannot be deleted before the retention
  ends, so the erasure refuses before it starts (:meth:`S3BlobStore.erasure_obstacle`)
  instead of deleting what it can and pretending.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from typing_extensions import TypedDict

from ..errors import ErasureBlocked, IntegrityError, NotFound, WorkspaceError
from .blobstore import BlobStore, _blob_path

__all__ = ["NOT_REACHED", "NO_OVERWRITE", "BlobStoreCheck", "S3BlobStore", "check_store", "open_store"]

#: what the erasure does not reach on object storage, and no check here reads
NOT_REACHED = [
    "the bytes of the bucket's other objects (ciphertexts of photos not erased) are not read",
    "copies made by the provider or the bucket's owner: replication to other buckets or "
    "regions, backups (e.g. AWS Backup), inventories",
    "the provider's storage media after deletion (not overwritten: deleting a version frees it)",
]
NO_OVERWRITE = (
    "not applicable on object storage: a PUT makes a new object or version and never "
    "writes over the old bytes; every version and delete marker of each blob was deleted "
    "instead"
)
_INSTALL = "S3 stores need s3fs: pip install 'disgorge[s3]'"


class BlobStoreCheck(TypedDict):
    """The verifier's listing of the erased blobs' versions on object storage."""

    store: str
    #: the bucket's versioning: Enabled, Suspended, or never enabled
    versioning: str
    #: erased blob keys whose versions were listed
    objects_checked: int
    versions_left: int
    delete_markers_left: int
    #: what "overwrite before delete" means here (nothing), and what was done instead
    overwrite: str
    not_scanned: list[str]


def check_store(url: str, endpoint: str | None) -> tuple[str, str]:
    """The store URL and endpoint to keep in ``config.toml``, or a :class:`WorkspaceError`.

    Only ``s3://BUCKET[/PREFIX]`` is accepted (a folder outside the workspace would be
    outside the verifier's scan); neither it nor the endpoint may carry credentials. The
    errors never repeat the values, which may hold a secret.
    """
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise WorkspaceError(
            "--store: only s3://BUCKET/PREFIX is supported (the default keeps the blobs in the workspace)"
        )
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in url or "#" in url:
        raise WorkspaceError(
            "--store: the URL carries credentials or parameters, and it is kept in config.toml; give "
            "s3://BUCKET/PREFIX only (credentials come from AWS_ACCESS_KEY_ID/... or ~/.aws)"
        )
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not bucket or not all(c.isalnum() or c in "-." for c in bucket):
        raise WorkspaceError("--store: s3://BUCKET/PREFIX names no valid bucket")
    if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
        raise WorkspaceError("--store: the prefix has an empty, '.' or '..' part")
    clean = f"s3://{bucket}/{prefix}".rstrip("/")
    if not endpoint:
        return clean, ""
    where = urlsplit(endpoint)
    if where.scheme not in ("http", "https") or not where.hostname:
        raise WorkspaceError("--store-endpoint: expected http(s)://HOST[:PORT]")
    if "@" in where.netloc or where.query or where.fragment or "?" in endpoint or "#" in endpoint:
        raise WorkspaceError(
            "--store-endpoint: the URL carries credentials or parameters, and it is kept in "
            "config.toml; give http(s)://HOST[:PORT] only"
        )
    return clean, endpoint.rstrip("/")


def open_store(url: str, endpoint: str = "") -> BlobStore:
    """The blob store of a config: on S3 for an ``s3://`` URL, else through fsspec."""
    if url.startswith("s3://"):
        return S3BlobStore(url, endpoint)
    return BlobStore(url)


def _code(exc: BaseException) -> str:
    """The S3 error code behind an exception (s3fs wraps botocore's ClientError)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
        seen = seen.__cause__ or seen.__context__
    return ""


def _no_credentials(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class S3BlobStore(BlobStore):
    """The content-addressed store of :class:`BlobStore`, under ``s3://BUCKET/PREFIX``."""

    def __init__(self, url: str, endpoint: str = "") -> None:
        try:
            import s3fs
        except ImportError:
            raise WorkspaceError(_INSTALL) from None
        self.url = url
        self.endpoint = endpoint
        parts = urlsplit(url)
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        self.root = f"{self.bucket}/{self.prefix}".rstrip("/")
        self._direct = False
        # a fresh client: a cached one would keep the credentials it was made with
        self.fs = s3fs.S3FileSystem(
            endpoint_url=endpoint or None, skip_instance_cache=True, use_listings_cache=False
        )
        self._call("head_bucket", Bucket=self.bucket)

    @property
    def is_local(self) -> bool:
        return False

    def _call(self, method: str, **kwargs: Any) -> Any:
        """One S3 call; missing credentials and an unreachable bucket are clear errors."""
        try:
            return self.fs.call_s3(method, **kwargs)
        except Exception as exc:
            if _no_credentials(exc):
                raise WorkspaceError(
                    "S3 store: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or ~/.aws/credentials; they are never "
                    "kept in the workspace)"
                ) from None
            if method == "head_bucket":
                code = _code(exc) or type(exc).__name__
                why = (
                    "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be reached ({code})"
                )
                raise WorkspaceError(f"S3 store: bucket {self.bucket} {why}") from None
            raise

    def _key(self, key: str) -> str:
        """The object key (without the bucket) of a blob."""
        return _blob_path(self.prefix, key).lstrip("/")

    def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        self._call("put_object", Bucket=self.bucket, Key=self._key(key), Body=data)
        return key

    def get(self, key: str) -> bytes:
        try:
            data: bytes = self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            raise NotFound(f"blob {key} is missing from the store") from None
        except Exception as exc:
            if _no_credentials(exc):
                self._call("head_bucket", Bucket=self.bucket)  # raises the clear error
            raise
        if hashlib.sha256(data).hexdigest() != key:
            raise IntegrityError(f"blob {key}: content does not match its address")
        return data

    def delete(self, key: str, *, overwrite: bool = False) -> None:
        """Delete every version and delete marker of the blob (idempotent); ``overwrite``
        has no meaning on object storage (see the module's docstring)."""
        self.purge(key)

    def versions(self, key: str) -> tuple[list[str], list[str]]:
        """The version ids of the blob's object versions and of its delete markers."""
        name = self._key(key)
        versions: list[str] = []
        markers: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": name}
        while True:
            page = self._call("list_object_versions", **kwargs)
            versions += [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == name]
            markers += [m["VersionId"] for m in page.get("DeleteMarkers", []) if m["Key"] == name]
            if not page.get("IsTruncated"):
                return versions, markers
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def purge(self, key: str) -> tuple[int, int]:
        """Delete every version and delete marker of the blob; returns how many of each.

        An unversioned bucket lists its one object with the version id ``null``, so the
        same call removes it. A version that cannot be deleted (retention, legal hold, no
        right) raises: it is never skipped quietly.
        """
        versions, markers = self.versions(key)
        ids = versions + markers
        name = self._key(key)
        for start in range(0, len(ids), 1000):
            part = ids[start : start + 1000]
            answer = self._call(
                "delete_objects",
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": name, "VersionId": v} for v in part], "Quiet": True},
            )
            errors = answer.get("Errors") or []
            if errors:
                codes = sorted({str(e.get("Code")) for e in errors})
                raise ErasureBlocked(
                    f"S3 store: {len(errors)} version(s) of blob {key} could not be deleted "
                    f"({', '.join(codes)})"
                )
        return len(versions), len(markers)

    def versioning(self) -> str:
        status = self._call("get_bucket_versioning", Bucket=self.bucket).get("Status")
        return str(status) if status else "never enabled"

    def erasure_obstacle(self) -> str | None:
        """Why an erasure cannot delete this store's blobs (Object Lock), or None."""
        try:
            found = self._call("get_object_lock_configuration", Bucket=self.bucket)
        except OSError as exc:  # s3fs turns S3's error answers into OSErrors
            code = _code(exc)
            if code == "ObjectLockConfigurationNotFoundError":
                return None
            return (
                f"the S3 store's Object Lock configuration cannot be read ({code or type(exc).__name__}): "
                "disgorge cannot know that every version of a blob can be deleted, so it does not "
                "start an erasure (grant s3:GetBucketObjectLockConfiguration)"
            )
        enabled = (found.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled")
        if enabled == "Enabled":
            return (
                f"the S3 store's bucket {self.bucket} has Object Lock enabled: versions under "
                "retention or a legal hold cannot be deleted before it ends, so an erasure could not "
                "remove the photos' blobs; refused before anything was changed (keep the blobs in a "
                "bucket without Object Lock)"
            )
        return None

    def check_erased(self, keys: list[str]) -> BlobStoreCheck:
        """List the versions of each erased blob: the proof that none is left."""
        versions = markers = 0
        for key in keys:
            v, m = self.versions(key)
            versions += len(v)
            markers += len(m)
        return {
            "store": self.url,
            "versioning": self.versioning(),
            "objects_checked": len(keys),
            "versions_left": versions,
            "delete_markers_left": markers,
            "overwrite": NO_OVERWRITE,
            "not_scanned": list(NOT_REACHED),
        }

    def temporaries(self) -> Iterator[tuple[str, float]]:
        """None: a blob is one PUT, never a temporary renamed into place."""
        return iter(())
