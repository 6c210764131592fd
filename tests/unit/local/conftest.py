"""What the tests of the local runner share: an Airflow home with a password, and a stand-in
for Airflow's api-server that answers over real HTTP, so `api.Client` runs the client library's
requests end to end."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from freshcast.local import processes
from freshcast.local.config import Airflow

TOKEN = "t0ken"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeApi:
    """Answers `(method, path)` from `routes`: a list of (status, JSON body) is answered in
    turn, one answer serves every request; an unknown path is a 404. `POST /auth/token` gives
    TOKEN. Every other request is kept in `seen`."""

    routes: dict[tuple[str, str], Any] = field(default_factory=dict)
    seen: list[Request] = field(default_factory=list)
    port: int = 0

    def answer(self, method: str, path: str) -> tuple[int, Any]:
        if (method, path) == ("POST", "/auth/token"):
            return 201, {"access_token": TOKEN}
        found = self.routes.get((method, path))
        if found is None:
            return 404, {"detail": f"{path} not found"}
        return found.pop(0) if isinstance(found, list) else found


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if url.path != "/auth/token":
                fake.seen.append(
                    Request(
                        self.command,
                        url.path,
                        parse_qs(url.query),
                        dict(self.headers),
                        json.loads(raw) if raw else None,
                    )
                )
            status, body = fake.answer(self.command, url.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def af(tmp_path) -> Iterator[Airflow]:
    af = Airflow(home=tmp_path / "airflow-home", port=8793)
    af.home.mkdir()
    af.passwords_file.write_text(json.dumps({"admin": "s3cret"}))
    yield af
    processes.stop(af, say=lambda _: None, grace=0.5)  # what a failed test started


@pytest.fixture
def api_af(af: Airflow, fake_api: FakeApi) -> Airflow:
    """The home of `af`, its api-server the fake one."""
    return Airflow(home=af.home, port=fake_api.port)
