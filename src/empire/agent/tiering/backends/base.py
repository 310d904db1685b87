"""What every storage backend shares: location keys, checksums, and OS-error classification.

Locations are derived from the object id, not chosen at random, so a crashed move's journal row
names exactly the file or key to finish or clean up. Ids that are not safe path segments
(slashes, dots, spaces, non-ASCII) are hashed, and every location is sharded by two hex digits of
the id's hash to keep directories and S3 prefixes small.
"""

from __future__ import annotations

import errno
import hashlib
import re

from empire.errors import NotFoundError, PermanentError, TemporaryError

__all__ = ["CHUNK", "PARTIAL_SUFFIX", "classify_os_error", "location_for", "sha256_hex", "validate_location"]

CHUNK = 1024 * 1024
PARTIAL_SUFFIX = ".partial"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_SAFE_LOCATION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
_TEMPORARY_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EBUSY, errno.EIO, errno.EINTR, errno.ETIMEDOUT}


def location_for(object_id: str) -> str:
    digest = hashlib.sha256(object_id.encode()).hexdigest()
    if _SAFE_ID.match(object_id) and not object_id.endswith(PARTIAL_SUFFIX):
        return f"{digest[:2]}/{object_id}"
    return f"{digest[:2]}/_{digest[:40]}"


def validate_location(location: str) -> str:
    """Refuse anything that could escape a tier root (absolute paths, `..`) or collide with a partial."""
    if (
        not _SAFE_LOCATION.match(location)
        or any(part in (".", "..") for part in location.split("/"))
        or location.endswith(PARTIAL_SUFFIX)
    ):
        raise PermanentError(f"invalid storage location {location!r}")
    return location


def sha256_hex(digest: hashlib._Hash) -> str:
    return "sha256:" + digest.hexdigest()


def classify_os_error(exc: OSError, what: str) -> Exception:
    """Full disk, I/O hiccups and timeouts may pass: TemporaryError. A missing file: NotFoundError."""
    detail = f"{what}: {exc.strerror or exc}"
    if isinstance(exc, FileNotFoundError):
        return NotFoundError(detail)
    if exc.errno == errno.ENOSPC:
        return TemporaryError(f"{what}: no space left on device")
    if exc.errno in _TEMPORARY_ERRNOS:
        return TemporaryError(detail)
    return PermanentError(detail)
