"""TLS on the agent's HTTP port, from a certificate and key file, picked up again when they change.

Why reload: cert-manager (and any other rotation) replaces the files in a mounted Secret before
the old certificate expires; a server that read them once at start serves an expired certificate
until someone restarts it. Here every accepted connection asks `TlsFiles.context()`, which looks
at the files at most once a second (a `stat`, nothing more when they are unchanged) and builds a
new `SSLContext` when they changed. New connections get the new certificate; open ones keep the
one they were made with. A pair that does not load (the key written before the certificate, a
half-copied file) is logged and the previous context stays, so a rotation in progress never
takes the port down; at start a pair that does not load is a `ConfigError`.

Only TLS 1.2 and 1.3 are offered (`minimum_version`); the ciphers are OpenSSL's defaults for
those versions, which exclude the weak ones.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from empire.errors import ConfigError

__all__ = ["TlsFiles"]

logger = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int, int], ...]


class TlsFiles:
    def __init__(
        self, cert: Path, key: Path, *, check_every: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.cert, self.key, self.check_every, self._now = Path(cert), Path(key), check_every, monotonic
        try:
            self._stamp = self._files_stamp()
            self._context = self._load()
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"TLS certificate {self.cert} / key {self.key} cannot be used: {_why(exc)}") from None
        self._checked = self._now()
        self.reloads = 0

    def context(self) -> ssl.SSLContext:
        """The context for a new connection: the files' current pair, or the last one that loaded."""
        now = self._now()
        if now - self._checked < self.check_every:
            return self._context
        self._checked = now
        try:
            stamp = self._files_stamp()
        except OSError as exc:
            logger.warning("TLS files unreadable (%s); serving the certificate loaded before", _why(exc))
            return self._context
        if stamp != self._stamp:
            try:
                self._context = self._load()
            except (OSError, ssl.SSLError, ValueError) as exc:
                logger.warning("TLS certificate %s changed but does not load (%s); serving the one loaded before",
                               self.cert, _why(exc))  # fmt: skip
                return self._context  # the stamp stays old: tried again on the next check
            self._stamp = stamp
            self.reloads += 1
            logger.info("TLS certificate %s reloaded", self.cert)
        return self._context

    def _files_stamp(self) -> _Stamp:
        out = []
        for path in (self.cert, self.key):
            st = os.stat(path)  # follows the symlinks a mounted Secret swaps (..data)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _load(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__
