"""A real S3-compatible object store for the tests: moto's S3 service in server mode on 127.0.0.1.

:class:`S3Server` serves moto's WSGI application (the one ``moto_server`` runs) over HTTP on a free
port of 127.0.0.1, in a thread of the test process; every client -- the search's driver and its Ray
workers in other processes, pyarrow, boto3 -- talks to it over the network as to any S3 endpoint.
The test makes its bucket. A *gate* in front of the application can hold the requests of one upload
until the test releases them: the way to kill a driver while a worker is writing a checkpoint,
whatever the timing.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

#: Credentials moto accepts; given to every process through its environment (never in a URI).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata look-ups (seconds of timeouts off EC2)
}


@dataclass
class Hold:
    """Requests held by the gate: the first one that matches sets ``reached``; all wait for ``release``."""

    pattern: re.Pattern[str]
    nth: int  # hold requests under the nth distinct prefix the pattern matches (1 = the first)
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    prefixes: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


class _Gate:
    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.holds: list[Hold] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") in ("PUT", "POST"):
            for hold in self.holds:
                m = hold.pattern.search(path)
                if m is None:
                    continue
                with self.lock:
                    if m.group(0) not in hold.prefixes:
                        hold.prefixes.append(m.group(0))
                    mine = hold.prefixes.index(m.group(0)) + 1 == hold.nth
                    if mine:
                        hold.held.append(f"{environ['REQUEST_METHOD']} {path}")
                if mine:
                    hold.reached.set()
                    hold.release.wait(timeout=900)
        return self.app(environ, start_response)


class S3Server:
    """moto's S3 on ``127.0.0.1:<free port>``; :meth:`uri` names a location in a bucket made by :meth:`bucket`."""

    def __init__(self) -> None:
        import logging

        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

        self._gate = _Gate(DomainDispatcherApplication(create_backend_app))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._server = make_server("127.0.0.1", self.port, self._gate, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")  # fmt: skip

    def bucket(self, name: str) -> str:
        """Make bucket ``name``; returns it."""
        self.client().create_bucket(Bucket=name)
        return name

    def uri(self, bucket: str, prefix: str) -> str:
        """``s3://bucket/prefix?endpoint_override=127.0.0.1:<port>&scheme=http`` (pyarrow's query parameters)."""
        return f"s3://{bucket}/{prefix.strip('/')}?endpoint_override=127.0.0.1:{self.port}&scheme=http"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def hold(self, pattern: str, nth: int = 1) -> Hold:
        """Hold every upload request (PUT/POST) whose path falls under the ``nth`` distinct match of
        ``pattern`` (a regex on the path: its match is the prefix), until ``Hold.release`` is set."""
        h = Hold(re.compile(pattern), nth)
        self._gate.holds.append(h)
        return h

    def stop(self) -> None:
        """Release every hold and stop serving."""
        for h in self._gate.holds:
            h.release.set()
        self._server.shutdown()
        self._thread.join(timeout=30)
