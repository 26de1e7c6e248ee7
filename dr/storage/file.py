"""A backup store in a local directory: the embedded default for `dr demo` and tests.

Keys map to paths under the root. Every write goes to a temp file in the target's own
directory (`.tmp-<name>.<random>`, mode 0600), is fsynced, renamed over the target with
os.replace and the directory is fsynced: a reader sees the old object or the whole new
one, and a crash leaves at most a temp file, which `list` hides and
`list_incomplete_uploads` reports. Directories are created 0700.

There are no versions: `version_id` is always None, and asking for one is NotFoundError.
`metadata` is accepted for symmetry with S3 and not kept (the manifest holds what
matters).
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import io
import os
import stat as stat_mod
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from dr.errors import NotFoundError, StorageError
from dr.storage.base import (
    COPY_BLOCK_SIZE,
    DeleteDenied,
    ObjectInfo,
    ObjectLockStatus,
    ObjectRef,
    Readable,
    StreamReader,
    UploadInfo,
    validate_key,
    validate_prefix,
)

TEMP_PREFIX = ".tmp-"
_TEMP_NAME_MAX = 200  # keep ".tmp-<name>.<random>" under the usual 255-byte name limit
DIR_MODE = 0o700


class FileStore:
    type_name = "file"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    def describe(self) -> str:
        return self.root.as_uri()

    # -- checks -----------------------------------------------------------------------

    def preflight(self, *, write: bool) -> None:
        if write:
            self._mkdirs(self.root)
        if not self.root.is_dir():
            raise StorageError(
                f"backup directory {self.root} does not exist or is not a directory; "
                "check storage.path in the config"
            )
        if write:
            try:
                fd, probe = tempfile.mkstemp(dir=self.root, prefix=f"{TEMP_PREFIX}preflight.")
                os.close(fd)
                os.unlink(probe)
            except OSError as exc:
                raise self._os_error("writing to", self.root, exc) from exc

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
        path = self._path(key)
        self._mkdirs(path.parent)
        if not overwrite and path.exists():
            raise StorageError(f"{path} exists; refusing to overwrite a stored object")
        reader = StreamReader(stream, progress=progress)
        try:
            fd, tmp_name = tempfile.mkstemp(
                dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name[:_TEMP_NAME_MAX]}."
            )
        except OSError as exc:
            raise self._os_error("creating a temp file in", path.parent, exc) from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := reader.read(COPY_BLOCK_SIZE):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                os.link(tmp, path)  # atomic, and fails if the name was taken meanwhile
                tmp.unlink()
            _fsync_dir(path.parent)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            self._prune_empty_dirs(path.parent)
            if reader.error is not None or not isinstance(exc, OSError):
                raise  # the caller's own exception, unchanged
            raise self._os_error("writing", path, exc) from exc
        return ObjectRef(key=key, version_id=None, size=reader.size, sha256=reader.sha256)

    def put_bytes(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> ObjectRef:
        return self.put_stream(key, io.BytesIO(data), metadata=metadata)

    # -- reading ----------------------------------------------------------------------

    def open_stream(self, key: str, version_id: str | None = None) -> BinaryIO:
        path = self._existing(key, version_id)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise self._not_found(key) from exc
        except OSError as exc:
            raise self._os_error("opening", path, exc) from exc

    def get_bytes(self, key: str, version_id: str | None = None) -> bytes:
        with self.open_stream(key, version_id) as stream:
            try:
                return stream.read()
            except OSError as exc:
                raise self._os_error("reading", self._path(key), exc) from exc

    def stat(self, key: str, version_id: str | None = None) -> ObjectInfo:
        path = self._existing(key, version_id)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise self._not_found(key) from exc
        except OSError as exc:
            raise self._os_error("reading", path, exc) from exc
        if not stat_mod.S_ISREG(st.st_mode):
            raise self._not_found(key)
        return _info(key, st)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for key, path, is_temp in self._walk(prefix):
            if is_temp:
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # deleted while we walked
                continue
            yield _info(key, st)

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.list(prefix)

    # -- removing ---------------------------------------------------------------------

    def delete(self, key: str, version_id: str | None = None) -> None:
        path = self._path(key)
        if version_id is not None:
            return  # no versions here, so not that one: like S3, nothing to delete
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._os_error("deleting", path, exc) from exc
        self._prune_empty_dirs(path.parent)

    def list_incomplete_uploads(self, prefix: str) -> builtins.list[str]:
        return [key for key, _ in self._temp_files(prefix)]

    def abort_incomplete_uploads(self, prefix: str) -> int:
        removed = 0
        for _, path in self._temp_files(prefix):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._os_error("deleting", path, exc) from exc
            removed += 1
            self._prune_empty_dirs(path.parent)
        return removed

    # -- run lock primitives (dr/storage/lock.py) --------------------------------------
    # An OS lock: flock(LOCK_EX) on the lock file, held for the run. The kernel drops it
    # when the process dies (SIGKILL too), so no lease is needed to recover. The file is
    # written in place through the locked descriptor and never replaced or deleted: a
    # new inode at the same path would be a second, independent lock.

    def try_flock(self, key: str) -> HeldFlock | None:
        """Lock `key`'s file (created 0600 if missing); None when another process holds it."""
        path = self._path(key)
        self._mkdirs(path.parent)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise self._os_error("opening the lock file", path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            raise self._os_error("locking", path, exc) from exc
        return HeldFlock(path, fd)

    def flock_held(self, key: str, *, max_size: int) -> bytes | None:
        """What the file of a HELD lock says (at most `max_size` bytes); None when no
        process holds it (a record left in the file is then a finished or dead run's)."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._os_error("opening the lock file", path, exc) from exc
        try:
            try:
                # A shared probe, dropped at once; a run acquiring in this instant retries.
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.pread(fd, max_size + 1, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except OSError as exc:
            raise self._os_error("reading the lock file", path, exc) from exc
        finally:
            os.close(fd)

    # -- retention primitives (dr prune, docs/retention.md) ------------------------------
    # No versions, no delete markers, no Object Lock: a delete is an unlink. An
    # unfinished upload is a temp file; its "initiated" time is its last write.

    def list_delete_markers(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        return iter(())

    def delete_version(self, key: str, version_id: str | None) -> bool:
        if version_id is not None:
            return False  # no versions here, so not that one
        return self._remove(self._path(key))

    def _remove(self, path: Path) -> bool:
        """Unlink one file for prune; False when it was gone already. A refusal is
        DeleteDenied, so prune can name the rights it lacks."""
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except PermissionError as exc:
            raise DeleteDenied(f"file store: deleting {path} was refused: {exc.strerror}") from exc
        except OSError as exc:
            raise self._os_error("deleting", path, exc) from exc
        self._prune_empty_dirs(path.parent)
        return True

    def object_lock(self, key: str, version_id: str | None) -> ObjectLockStatus:
        self._existing(key, version_id)
        return ObjectLockStatus()

    def list_uploads(self, prefix: str) -> builtins.list[UploadInfo]:
        found: builtins.list[UploadInfo] = []
        for key, path in self._temp_files(prefix):
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:  # finished (renamed) or removed while we walked
                continue
            initiated = datetime.fromtimestamp(mtime, tz=UTC)
            found.append(UploadInfo(key=key, upload_id=path.name, initiated=initiated))
        return found

    def abort_upload(self, upload: UploadInfo) -> bool:
        target = self._path(upload.key)
        name = upload.upload_id
        # Only a temp file of this very key: the id must not name any other file.
        if "/" in name or not name.startswith(TEMP_PREFIX) or _temp_target(name) != target.name:
            raise StorageError(
                f"file store: {name!r} is not a temp file of {upload.key}; nothing removed"
            )
        return self._remove(target.parent / name)

    # -- end of retention primitives -------------------------------------------------

    # -- helpers ----------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        validate_key(key)
        name = key.rsplit("/", 1)[-1]
        if name.startswith(TEMP_PREFIX):
            raise StorageError(
                f"invalid object key {key!r}: names starting with "
                f"{TEMP_PREFIX!r} are the file store's temp files"
            )
        return self.root.joinpath(*key.split("/"))

    def _existing(self, key: str, version_id: str | None) -> Path:
        path = self._path(key)
        if version_id is not None:
            raise self._not_found(key, version_id)
        return path

    def _walk(self, prefix: str) -> Iterator[tuple[str, Path, bool]]:
        """(key, path, is_temp) for files under the prefix, sorted by key.

        For a temp file the key is the target it was being written as, so prefix
        matching works the same as for S3 multipart uploads."""
        validate_prefix(prefix)
        directory, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        found: builtins.list[tuple[str, Path, bool]] = []
        for dirpath, _dirnames, filenames in os.walk(start, onerror=self._walk_error):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else rel + "/"
            for name in filenames:
                is_temp = name.startswith(TEMP_PREFIX)
                target = _temp_target(name) if is_temp else name
                key = base + target
                if key.startswith(prefix):
                    found.append((key, Path(dirpath, name), is_temp))
        found.sort(key=lambda item: (item[0], item[1].name))
        return iter(found)

    def _walk_error(self, exc: OSError) -> None:
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            return  # the prefix's directory does not exist: nothing to list
        raise self._os_error("listing", Path(exc.filename or self.root), exc) from exc

    def _temp_files(self, prefix: str) -> builtins.list[tuple[str, Path]]:
        return [(key, path) for key, path, is_temp in self._walk(prefix) if is_temp]

    def _mkdirs(self, directory: Path) -> None:
        """mkdir -p with mode 0700 at every level (Path.mkdir(parents=True) gives the
        parents the umask's default mode instead)."""
        missing: builtins.list[Path] = []
        while not directory.is_dir():
            missing.append(directory)
            if directory.parent == directory:
                break
            directory = directory.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:
                if not path.is_dir():
                    raise self._os_error(
                        "creating directory", path, FileExistsError(17, "a file is in the way")
                    ) from None
            except OSError as exc:
                raise self._os_error("creating directory", path, exc) from exc

    def _prune_empty_dirs(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty (or already gone): stop here
                return
            directory = directory.parent

    def _not_found(self, key: str, version_id: str | None = None) -> NotFoundError:
        if version_id is not None:
            return NotFoundError(
                f"{self.describe()}/{key} version {version_id} not found: "
                "the file store keeps no versions"
            )
        return NotFoundError(f"{self.describe()}/{key} not found")

    def _os_error(self, doing: str, path: Path, exc: OSError) -> StorageError:
        cause = exc.strerror or str(exc)
        return StorageError(
            f"file store: {doing} {path} failed: {cause}; check the path, permissions "
            "and free space"
        )


class HeldFlock:
    """An flock held on a lock file of the store; `release` (or process death) drops it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def write(self, data: bytes) -> None:
        """Replace the file's content in place (the lock is on this inode)."""
        fd = self._require()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        except OSError as exc:
            raise StorageError(
                f"file store: writing the lock file {self.path} failed: "
                f"{exc.strerror or exc}; check the path, permissions and free space"
            ) from exc

    def still_ours(self) -> bool:
        """Whether the path still names the inode we hold: a lock file deleted or
        replaced under us means another run may hold a lock on the new one."""
        fd = self._require()
        try:
            held, now = os.fstat(fd), os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def _require(self) -> int:
        if self._fd is None:
            raise StorageError(f"file store: the lock on {self.path} was already released")
        return self._fd


def _temp_target(name: str) -> str:
    """'.tmp-snapshot.enc.k3j4h5' -> 'snapshot.enc' (mkstemp adds '.<random>')."""
    return name[len(TEMP_PREFIX) :].rpartition(".")[0]


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        key=key, size=st.st_size, last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC)
    )


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable: fsync the directory that holds the new name."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
