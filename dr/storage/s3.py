"""A backup store in an S3 bucket (AWS or any S3-compatible endpoint).

Uploads use boto3's managed transfer (`upload_fileobj`, s3transfer underneath): it reads
the caller's non-seekable stream one part at a time, uploads parts on a small thread
pool, and aborts the multipart upload itself when anything fails (a part, the caller's
stream, Ctrl-C), so a failed run leaves no debris it could name. botocore retries
throttling, 5xx and connection errors (standard mode); a killed process can still leave
an upload behind, which `list_incomplete_uploads`/`abort_incomplete_uploads` find
(`dr prune` removes them, under the per-cluster run lock, dr/storage/lock.py).

Every request that carries data carries `x-amz-checksum-crc32` (ChecksumAlgorithm):
PutObject and every UploadPart. AWS refuses writes into Object Lock buckets without
Content-MD5 or a checksum, and the stored per-part checksums let S3 verify each part on
arrival (SeaweedFS 4.48 accepted unchecksummed writes into a locked bucket here, so the
test checks the request headers rather than relying on a refusal). CRC32, not SHA256:
the checksum guards the transfer against corruption, not against an attacker (the
envelope's tags and the signed manifest do that), and SHA-256 made it one more full
pass over every byte at a third of CRC32's speed (docs/performance.md). CRC32 is also
botocore's own default.

For the same reason bodies are not SHA-256-signed (`payload_signing_enabled: False`):
over https with a checksum botocore skips it anyway; over plain http (a lab's SeaweedFS
or MinIO) it made one more SHA-256 pass over every byte (~0.15 CPU-s per 250 MB,
docs/performance.md). What a body-rewriting man in the middle could do there, the
attacker who can write to the bucket can do too, and the restore refuses it
(invariant 3). The request itself, headers and checksum included, is still signed.

Credentials come only from boto3's standard chain (environment, profile, SSO, instance
or task role). Nothing here accepts a secret.
"""

from __future__ import annotations

import builtins
import io
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO, Literal

import boto3
import boto3.exceptions
import botocore.exceptions
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config

from dr.awssession import new_session
from dr.errors import DRError, IntegrityError, NotFoundError, StorageError, UsageError
from dr.storage.base import (
    COPY_BLOCK_SIZE,
    DeleteDenied,
    ObjectInfo,
    ObjectLockStatus,
    ObjectRef,
    Readable,
    StreamReader,
    TaggedObject,
    UploadInfo,
    validate_key,
    validate_prefix,
)

MIB = 1024 * 1024

# Provider limits: https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html
S3_MAX_PARTS = 10_000
S3_MIN_PART_SIZE = 5 * MIB  # every part but the last
S3_MAX_PART_SIZE = 5 * 1024 * MIB

DEFAULT_CHUNK_SIZE = 8 * MIB  # 8 MiB x 10,000 parts = 78 GiB, far above any snapshot

# Downloads (`download_into`): ranged GETs in flight, and the chunks queued for the one
# IO thread that writes them (s3transfer's defaults queue up to 1000 x 256 KiB).
DOWNLOAD_CONCURRENCY = 4
DOWNLOAD_IO_CHUNK = 1 * MIB
DOWNLOAD_IO_QUEUE = 8

# A read of one object version from an offset is safe to repeat: resume this often.
_MAX_READ_RESUMES = 3

_BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                boto3.exceptions.Boto3Error)  # fmt: skip
_UNREACHABLE = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ProxyConnectionError,
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
)
_NO_CREDENTIALS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
)
_STREAM_BROKEN = (
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.IncompleteReadError,
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
# A conditional write (If-Match / If-None-Match) that did not happen: lost the race.
_CONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_ACCESS_CODES = frozenset({
    "AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled",
})  # fmt: skip

# Transfer integrity of every write (module docstring): the x-amz-checksum-* algorithm.
CHECKSUM_ALGORITHM = "CRC32"


class S3Store:
    """Backups in `s3://bucket`. One instance may be shared by threads.

    Memory: an upload holds at most about

        (max_in_memory_chunks + 2) x chunk_size + 1 MiB x (parts in flight + 1)

    bytes: s3transfer keeps `max_in_memory_chunks` parts read and not yet acknowledged
    (its `max_in_memory_upload_chunks` semaphore counts parts in flight too); its one
    submission thread builds the next part meanwhile, and building it from short reads
    briefly takes two copies (`StreamReader` joins the pieces); botocore reads each
    request body in 1 MiB blocks to sign and checksum it. Parts in flight are
    min(max_concurrency, max_in_memory_chunks). Defaults: 4 x 8 MiB + 3 MiB = 35 MiB.
    Measured with 5 MiB chunks (tracemalloc peak, 64 MiB upload): 17.1 MiB for 1/1,
    23.1 MiB for 2/2, 33.2 MiB for 4/4 (max_concurrency/max_in_memory_chunks).

    Size: the stream's length is unknown up front, so s3transfer cannot grow the part
    size to fit; the largest object is chunk_size x S3_MAX_PARTS (8 MiB -> 78 GiB).
    Raise `chunk_size` for larger snapshots; an upload past the limit fails cleanly.
    """

    type_name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_concurrency: int = 2,
        max_in_memory_chunks: int = 2,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 5,
        addressing_style: Literal["auto", "virtual", "path"] | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise UsageError(f"S3 bucket name {bucket!r} is invalid: give the bare name")
        if not S3_MIN_PART_SIZE <= chunk_size <= S3_MAX_PART_SIZE:
            raise UsageError(
                f"S3 chunk_size {chunk_size} is outside the part size limits "
                f"{S3_MIN_PART_SIZE} (5 MiB) to {S3_MAX_PART_SIZE} (5 GiB)"
            )
        if max_concurrency < 1 or max_in_memory_chunks < 1 or max_attempts < 1:
            raise UsageError(
                "S3 max_concurrency, max_in_memory_chunks and max_attempts must be >= 1"
            )
        self.bucket = bucket
        self.chunk_size = chunk_size
        self.max_object_size = chunk_size * S3_MAX_PARTS
        self.endpoint_url = endpoint_url
        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Custom endpoints (SeaweedFS, MinIO, Ceph) rarely have wildcard DNS.
            s3={
                "addressing_style": addressing_style or ("path" if endpoint_url else "auto"),
                # SigV4 signs "UNSIGNED-PAYLOAD" instead of each body's SHA-256 (module
                # docstring): what botocore already does over https with a checksum.
                "payload_signing_enabled": False,
            },
            max_pool_connections=max(10, max_concurrency + 2),
            user_agent_extra="vault-dr",
        )
        # A Session of our own: the default session is not safe to share across threads.
        session = new_session(region)
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._transfer_config = _transfer_config(chunk_size, max_concurrency, max_in_memory_chunks)
        self._capture = _ResponseCapture(self._client)

    def describe(self) -> str:
        return f"s3://{self.bucket}"

    @property
    def endpoint(self) -> str:
        return str(self.endpoint_url or self._client.meta.endpoint_url)

    # -- checks -----------------------------------------------------------------------

    def preflight(self, *, write: bool) -> None:
        with self._errors("HeadBucket"):
            self._client.head_bucket(Bucket=self.bucket)
        if not write:
            return
        with self._errors("GetBucketVersioning"):
            status = self._client.get_bucket_versioning(Bucket=self.bucket).get("Status")
        if status != "Enabled":
            endpoint = f" --endpoint-url {self.endpoint_url}" if self.endpoint_url else ""
            raise StorageError(
                f"bucket {self.bucket} has versioning {status or 'not enabled'}; backups "
                f"need it: aws s3api put-bucket-versioning --bucket {self.bucket} "
                f"--versioning-configuration Status=Enabled{endpoint} "
                "(or enable it in terraform/)"
            )

    # -- writing ----------------------------------------------------------------------

    def put_stream(
        self,
        key: str,
        stream: Readable,
        *,
        metadata: Mapping[str, str] | None = None,
        progress: Callable[[int], None] | None = None,
        overwrite: bool = True,
    ) -> ObjectRef:
        validate_key(key)
        reader = StreamReader(
            stream,
            progress=progress,
            limit=self.max_object_size,
            limit_message=(
                f"S3 upload s3://{self.bucket}/{key} failed: the stream is larger than "
                f"chunk_size x {S3_MAX_PARTS} parts = {self.max_object_size} bytes; "
                "raise storage.chunk_size"
            ),
        )
        extra: dict[str, Any] = {"ChecksumAlgorithm": CHECKSUM_ALGORITHM}
        if metadata:
            extra["Metadata"] = dict(metadata)
        stream_failure: BaseException | None = None
        with self._capture.expect(self.bucket, key, write_once=not overwrite) as response:
            try:
                # What boto3's upload_fileobj does, spelled out so that a failure seen
                # here (a part refused, Ctrl-C, SIGTERM) reaches the stream before the
                # manager's shutdown waits for its submission thread: that thread may be
                # blocked in read() on a stream that other threads feed (the backup
                # pipeline), and would otherwise wait for bytes nobody will use.
                with create_transfer_manager(self._client, self._transfer_config) as manager:
                    future = manager.upload(reader, self.bucket, key, extra_args=extra)
                    try:
                        future.result()
                    except BaseException:
                        reader.abort()
                        raise
            except BaseException as exc:
                # s3transfer has aborted the multipart upload before result() returned.
                if reader.error is None and isinstance(exc, _BOTO_ERRORS):
                    raise self._map_error(exc, "upload", key) from exc
                if reader.error is None or exc is reader.error:
                    raise
                stream_failure = reader.error  # the caller's stream failed first
        if stream_failure is not None:
            raise stream_failure
        version_id = response.get("VersionId")
        if version_id is None:
            # No response caught, or a provider that leaves out x-amz-version-id. The
            # Keys are unique per backup (the id has a random suffix), so the latest
            # version is the one we just wrote.
            version_id = self._head(key, None).get("VersionId")
        return ObjectRef(key=key, version_id=version_id, size=reader.size, sha256=reader.sha256)

    def put_bytes(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> ObjectRef:
        return self.put_stream(key, io.BytesIO(data), metadata=metadata)

    # -- reading ----------------------------------------------------------------------

    def open_stream(self, key: str, version_id: str | None = None) -> BinaryIO:
        validate_key(key)
        response = self._get_object(key, version_id)
        raw = _S3ObjectReader(self, key, version_id, response)
        return io.BufferedReader(raw, buffer_size=COPY_BLOCK_SIZE)

    def get_bytes(self, key: str, version_id: str | None = None) -> bytes:
        with self.open_stream(key, version_id) as stream:
            return stream.read()

    def download_into(
        self,
        key: str,
        version_id: str | None,
        sink: Any,
        *,
        concurrency: int = DOWNLOAD_CONCURRENCY,
    ) -> None:
        """Download one object version into `sink` (a seekable file: `seekable()`,
        `seek()`, `tell()`, `write()`) with boto3's managed download: ranged GETs of
        chunk_size on `concurrency` threads, each retried by s3transfer (from the start
        of its range), written at their offsets by one IO thread. So `sink` sees writes
        out of order, and a retried range twice (dr/ops/fetch.py turns them into an
        in-order stream). An exception raised by `sink.write` fails the download: the
        other ranges stop at their next chunk.

        Memory: at most DOWNLOAD_IO_QUEUE chunks of DOWNLOAD_IO_CHUNK wait for the IO
        thread (s3transfer's bounded IO executor), plus one chunk being read per range
        in flight: (8 + 4) x 1 MiB with the defaults.
        """
        validate_key(key)
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        config = TransferConfig(
            multipart_threshold=self.chunk_size,
            multipart_chunksize=self.chunk_size,
            max_concurrency=concurrency,
            use_threads=True,
            max_io_queue=DOWNLOAD_IO_QUEUE,
            io_chunksize=DOWNLOAD_IO_CHUNK,
            preferred_transfer_client="classic",
        )
        try:
            with self._errors("GetObject", key, version_id):
                self._client.download_fileobj(
                    self.bucket, key, sink, ExtraArgs=extra, Config=config
                )
        except DRError:
            raise
        except Exception as exc:
            # s3transfer's own errors (retries exhausted, an ETag that changed between
            # ranges) are no botocore errors; anything else (the sink's) is the caller's.
            if not type(exc).__module__.startswith("s3transfer"):
                raise
            raise StorageError(
                f"S3 GetObject s3://{self.bucket}/{key} failed: {type(exc).__name__}: "
                f"{_one_line(str(exc))}"
            ) from exc

    def stat(self, key: str, version_id: str | None = None) -> ObjectInfo:
        validate_key(key)
        head = self._head(key, version_id)
        found = head.get("VersionId")
        is_latest = True
        if version_id is not None:
            latest = self._head(key, None).get("VersionId")
            is_latest = latest == found
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            last_modified=head["LastModified"],
            version_id=found,
            is_latest=is_latest,
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        for page in self._pages("ListObjectsV2", "list_objects_v2", prefix):
            for item in page.get("Contents", ()):
                yield ObjectInfo(
                    key=item["Key"], size=int(item["Size"]), last_modified=item["LastModified"]
                )

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every version, keys in order, newest version first (S3's own order).
        Delete markers are left out: they hold no data."""
        validate_prefix(prefix)
        for page in self._pages("ListObjectVersions", "list_object_versions", prefix):
            for item in page.get("Versions", ()):
                yield ObjectInfo(
                    key=item["Key"],
                    size=int(item["Size"]),
                    last_modified=item["LastModified"],
                    version_id=item.get("VersionId"),
                    is_latest=bool(item.get("IsLatest", False)),
                )

    # -- removing ---------------------------------------------------------------------

    def delete(self, key: str, version_id: str | None = None) -> None:
        """Without a version, a versioned bucket only adds a delete marker: the data
        stays until a version delete or a lifecycle rule removes it.

        A version is looked up before it is deleted: SeaweedFS 4.48 answers a
        DeleteObject for a VersionId it does not have with 204 and may make an OLDER
        version the latest (tests/integration/test_store_conformance.py
        test_delete_version). A retention re-run deleting what is already gone must
        not roll a manifest back. The lookup lists the key's versions rather than
        HEAD one: a delete marker answers HEAD with 405 on AWS and 404 on SeaweedFS."""
        validate_key(key)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id is not None:
            if not self._has_version(key, version_id):
                return
            args["VersionId"] = version_id
        with self._errors("DeleteObject", key, version_id):
            self._client.delete_object(**args)

    def list_incomplete_uploads(self, prefix: str) -> builtins.list[str]:
        return [key for key, _ in self._uploads(prefix)]

    def abort_incomplete_uploads(self, prefix: str) -> int:
        aborted = 0
        for key, upload_id in self._uploads(prefix):
            try:
                with self._errors("AbortMultipartUpload", key):
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
            except NotFoundError:  # NoSuchUpload: finished or aborted meanwhile
                continue
            aborted += 1
        return aborted

    # -- run lock primitives (dr/storage/lock.py) --------------------------------------
    # Compare-and-swap on one small object: create with `If-None-Match: *`, replace with
    # `If-Match: <etag>`. No delete right is needed (release overwrites).

    def get_tagged(self, key: str, *, max_size: int) -> TaggedObject | None:
        """The latest version of `key` with its ETag; None when there is none (or a
        delete marker is the latest). A body above `max_size` is not read (data b"")."""
        validate_key(key)
        try:
            response = self._get_object(key, None)
        except NotFoundError:
            return None
        body = response["Body"]
        size = int(response.get("ContentLength") or 0)
        try:
            with self._errors("GetObject", key):
                data = b"" if size > max_size else body.read(max_size + 1)
        finally:
            body.close()
        return TaggedObject(
            data=data if len(data) <= max_size else b"",
            etag=str(response.get("ETag") or ""),
            size=size,
            last_modified=response["LastModified"],
        )

    def put_if(self, key: str, data: bytes, *, etag: str | None) -> str | None:
        """Write `data` to `key` only if `key` does not exist (`etag` None) or its
        latest version still has `etag`. Returns the new ETag, or None when the
        condition failed: 412 PreconditionFailed (someone else wrote), or 409
        ConditionalRequestConflict (a concurrent conditional write; the caller re-reads
        and decides again)."""
        validate_key(key)
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ContentType": "application/json",
            "ChecksumAlgorithm": CHECKSUM_ALGORITHM,  # Object Lock buckets demand one
        }
        if etag is None:
            args["IfNoneMatch"] = "*"
        else:
            args["IfMatch"] = etag
        try:
            response = self._client.put_object(**args)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if error.get("Code") in _CONDITION_CODES or status in (409, 412):
                return None
            raise self._map_error(exc, "PutObject", key) from exc
        except _BOTO_ERRORS as exc:
            raise self._map_error(exc, "PutObject", key) from exc
        new_etag = response.get("ETag")
        if not new_etag:  # a provider that leaves it out: the write is ours, read it back
            new_etag = self._head(key, None).get("ETag")
        return str(new_etag)

    # -- retention primitives (dr prune, docs/retention.md) ------------------------------
    # Permanent deletes (DeleteObject with a VersionId): a delete without one only adds
    # a delete marker and frees nothing. The pruner role needs s3:DeleteObject,
    # s3:DeleteObjectVersion, s3:AbortMultipartUpload, s3:ListBucketVersions, and
    # s3:GetObjectRetention / s3:GetObjectLegalHold (without them HEAD leaves the lock
    # fields out, and a locked version would look unlocked).

    def list_delete_markers(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        for page in self._pages("ListObjectVersions", "list_object_versions", prefix):
            for item in page.get("DeleteMarkers", ()):
                yield ObjectInfo(
                    key=item["Key"],
                    size=0,
                    last_modified=item["LastModified"],
                    version_id=item.get("VersionId"),
                    is_latest=bool(item.get("IsLatest", False)),
                )

    def delete_version(self, key: str, version_id: str | None) -> bool:
        """Looked up first, like `delete`: SeaweedFS 4.48 answers a delete of a
        VersionId it does not have with success and may make an OLDER version the
        latest (docs/facts.md), which for a manifest would bring an old one back."""
        validate_key(key)
        if version_id is None:
            raise StorageError(
                f"S3 DeleteObject s3://{self.bucket}/{key}: no version id given; a delete "
                "without one only adds a delete marker (refused: nothing would be freed)"
            )
        if not self._has_version(key, version_id):
            return False
        self._destructive(
            "DeleteObject",
            key,
            version_id,
            lambda: self._client.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id),
        )
        return True

    def object_lock(self, key: str, version_id: str | None) -> ObjectLockStatus:
        head = self._head(key, version_id)
        return ObjectLockStatus(
            mode=head.get("ObjectLockMode") or None,
            retain_until=head.get("ObjectLockRetainUntilDate"),
            legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def list_uploads(self, prefix: str) -> builtins.list[UploadInfo]:
        validate_prefix(prefix)
        found: builtins.list[UploadInfo] = []
        for page in self._pages("ListMultipartUploads", "list_multipart_uploads", prefix):
            found.extend(
                UploadInfo(key=u["Key"], upload_id=u["UploadId"], initiated=u["Initiated"])
                for u in page.get("Uploads", ())
            )
        return sorted(found, key=lambda u: (u.key, u.initiated, u.upload_id))

    def abort_upload(self, upload: UploadInfo) -> bool:
        validate_key(upload.key)
        try:
            self._destructive(
                "AbortMultipartUpload",
                upload.key,
                None,
                lambda: self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id
                ),
            )
        except NotFoundError:  # NoSuchUpload: completed or aborted meanwhile
            return False
        return True

    def _destructive(
        self, operation: str, key: str, version_id: str | None, call: Callable[[], Any]
    ) -> None:
        """Run a delete; a refusal for lack of rights is `DeleteDenied` (the caller
        names the role that has them), everything else maps as usual."""
        try:
            call()
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _ACCESS_CODES:
                where = f"s3://{self.bucket}/{key}"
                where += f" (version {version_id})" if version_id else ""
                raise DeleteDenied(f"S3 {operation} {where} was refused: {code}") from exc
            raise self._map_error(exc, operation, key, version_id) from exc
        except _BOTO_ERRORS as exc:
            raise self._map_error(exc, operation, key, version_id) from exc

    # -- end of retention primitives -------------------------------------------------

    # -- helpers ----------------------------------------------------------------------

    def _uploads(self, prefix: str) -> builtins.list[tuple[str, str]]:
        validate_prefix(prefix)
        found: builtins.list[tuple[str, str]] = []
        for page in self._pages("ListMultipartUploads", "list_multipart_uploads", prefix):
            found.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", ()))
        return sorted(found)

    def _pages(self, operation: str, method: str, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator(method)
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
        while True:
            with self._errors(operation, prefix or None):
                page = next(pages, None)
            if page is None:
                return
            yield page

    def _has_version(self, key: str, version_id: str) -> bool:
        """Whether `key` has this version (an object version or a delete marker)."""
        for page in self._pages("ListObjectVersions", "list_object_versions", key):
            for item in (*page.get("Versions", ()), *page.get("DeleteMarkers", ())):
                if item["Key"] == key and item.get("VersionId") == version_id:
                    return True
        return False

    def _head(self, key: str, version_id: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id is not None:
            args["VersionId"] = version_id
        with self._errors("HeadObject", key, version_id):
            result: dict[str, Any] = self._client.head_object(**args)
        return result

    def _get_object(self, key: str, version_id: str | None, **extra: Any) -> dict[str, Any]:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key, **extra}
        if version_id is not None:
            args["VersionId"] = version_id
        with self._errors("GetObject", key, version_id):
            result: dict[str, Any] = self._client.get_object(**args)
        return result

    @contextmanager
    def _errors(
        self, operation: str, key: str | None = None, version_id: str | None = None
    ) -> Iterator[None]:
        try:
            yield
        except DRError:
            raise
        except _BOTO_ERRORS as exc:
            raise self._map_error(exc, operation, key, version_id) from exc

    def _map_error(
        self,
        exc: BaseException,
        operation: str,
        key: str | None = None,
        version_id: str | None = None,
    ) -> DRError:
        """One line naming the service, operation, object and cause, and what to do."""
        operation = getattr(exc, "operation_name", None) or operation
        where = f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"
        if version_id:
            where += f" (version {version_id})"
        head = f"S3 {operation} {where} failed"
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            message = _one_line(str(error.get("Message") or "")).rstrip(".")
            cause = f"{code}: {message}" if message else code
            bucket_level = key is None or operation in {"ListObjectsV2", "ListObjectVersions",
                                                         "ListMultipartUploads"}  # fmt: skip
            if code == "NoSuchBucket" or (code in _NOT_FOUND_CODES and bucket_level):
                return StorageError(
                    f"{head}: bucket {self.bucket} does not exist at {self.endpoint}; "
                    "create it (terraform/) or fix storage.bucket in the config"
                )
            if code in _NOT_FOUND_CODES or code == "NoSuchUpload":
                return NotFoundError(f"{where} not found (S3 {operation}: {code})")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return StorageError(
                    f"{head}: an object already exists there ({code}); stored objects are "
                    "written once and never replaced: retry the backup (it takes a new id)"
                )
            if code in _ACCESS_CODES:
                hint = "check the credentials and the IAM policy in terraform/"
                if operation == "DeleteObject":
                    hint += "; an Object Lock retention also forbids deleting a version"
                return StorageError(f"{head}: {cause}; {hint}")
            return StorageError(f"{head}: {cause}")
        if isinstance(exc, _NO_CREDENTIALS):
            return StorageError(
                f"{head}: no usable AWS credentials ({_one_line(str(exc))}); set AWS_PROFILE "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with an instance role"
            )
        if isinstance(exc, botocore.exceptions.FlexibleChecksumError):
            return IntegrityError(f"{head}: the data does not match its stored checksum")
        if isinstance(exc, _UNREACHABLE):
            return StorageError(
                f"{head}: cannot reach {self.endpoint}: {_one_line(str(exc))}; check "
                "storage.endpoint_url/region, the network and any proxy"
            )
        return StorageError(f"{head}: {type(exc).__name__}: {_one_line(str(exc))}")


def _transfer_config(
    chunk_size: int, max_concurrency: int, max_in_memory_chunks: int
) -> TransferConfig:
    config = TransferConfig(
        multipart_threshold=chunk_size,
        multipart_chunksize=chunk_size,
        max_concurrency=max_concurrency,
        use_threads=True,
        # The CRT client (when awscrt is installed) ignores the memory settings below.
        preferred_transfer_client="classic",
    )
    # boto3's TransferConfig does not take these as arguments, but it is an
    # s3transfer.manager.TransferConfig and the transfer manager reads them from it.
    config.max_in_memory_upload_chunks = max_in_memory_chunks
    # One upload per manager: one submission thread reads the stream, holding one part.
    config.max_submission_concurrency = 1
    return config


class _ResponseCapture:
    """Catches the PutObject / CompleteMultipartUpload response of our uploads.

    `upload_fileobj` returns nothing, but the response of the request that made the
    object carries its VersionId. botocore passes one `context` dict through every
    event of a request, so a `before-parameter-build` handler tags it with the target
    and an `after-call` handler (called once, after botocore's retries, on the worker
    thread that made the call) files the response under that target.
    """

    _TAG = "vault_dr_upload_target"
    _WRITE_ONCE = "vault_dr_write_once"

    def __init__(self, client: Any) -> None:
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str], dict[str, Any]] = {}
        for operation in ("PutObject", "CompleteMultipartUpload"):
            client.meta.events.register(f"before-parameter-build.s3.{operation}", self._tag)
            client.meta.events.register(f"after-call.s3.{operation}", self._record)

    @contextmanager
    def expect(
        self, bucket: str, key: str, *, write_once: bool = False
    ) -> Iterator[dict[str, Any]]:
        """`write_once`: the request that creates the object (PutObject or
        CompleteMultipartUpload) carries `If-None-Match: *`. s3transfer does not take
        IfNoneMatch in ExtraArgs, so the parameter is added in the same hook."""
        target = (bucket, key)
        slot: dict[str, Any] = {self._WRITE_ONCE: write_once}
        with self._lock:
            if target in self._slots:
                raise StorageError(
                    f"S3 upload s3://{bucket}/{key}: another upload to this key is "
                    "running in this process"
                )
            self._slots[target] = slot
        try:
            yield slot
        finally:
            with self._lock:
                del self._slots[target]

    def _tag(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        target = (params.get("Bucket"), params.get("Key"))
        context[self._TAG] = target
        with self._lock:
            slot = self._slots.get(target)  # type: ignore[arg-type]
        if slot is not None and slot.get(self._WRITE_ONCE):
            params["IfNoneMatch"] = "*"

    def _record(
        self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        if http_response.status_code >= 300 or "Error" in parsed:
            return
        target = context.get(self._TAG)
        if target is None:
            return
        with self._lock:
            slot = self._slots.get(target)
            if slot is not None:
                slot.clear()
                slot.update(parsed)


class _S3ObjectReader(io.RawIOBase):
    """The body of one object version, resumed with a ranged GET if the connection
    breaks mid-way (the version is pinned, so the bytes cannot change under us)."""

    def __init__(
        self, store: S3Store, key: str, version_id: str | None, response: dict[str, Any]
    ) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._body = response["Body"]
        self._version_id = response.get("VersionId") or version_id
        self._etag = response.get("ETag")
        self._offset = 0
        self._resumes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with self._store._errors("GetObject", self._key, self._version_id):
            while True:
                try:
                    count = int(self._body.readinto(buffer))
                except _STREAM_BROKEN as exc:
                    self._resume(exc)
                    continue
                self._offset += count
                return count

    def _resume(self, exc: BaseException) -> None:
        if self._resumes >= _MAX_READ_RESUMES:
            raise exc
        self._resumes += 1
        time.sleep(0.5 * 2 ** (self._resumes - 1))
        self._body.close()
        extra: dict[str, Any] = {"Range": f"bytes={self._offset}-"}
        if self._etag:
            extra["IfMatch"] = self._etag
        response = self._store._get_object(self._key, self._version_id, **extra)
        self._body = response["Body"]

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _one_line(text: str) -> str:
    return " ".join(text.split())
