"""Workshop mode: one machine serves a room. Who may come in (an instructor token, and one login per participant
derived from it), where each person's runs live, and the class gallery. Free of gradio, so it is testable alone.

Logins: the instructor signs in as `instructor` with the token; participant i signs in as `p01`, `p02`, ... with
`participant_token(token, "p01")`, printed at start for the instructor to hand out. A participant's runs live in
RUNS/participants/NAME; the instructor sees every run; the gallery (RUNS/gallery) is what the instructor
published to everyone.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTRUCTOR = "instructor"
MIN_TOKEN = 8


def participant_token(token: str, name: str) -> str:
    """Participant `name`'s password: an HMAC of the name under the instructor's token (12 hex digits), so the
    server keeps no list of passwords and a participant's password reveals nothing of another's."""
    return hmac.new(token.encode(), name.encode(), hashlib.sha256).hexdigest()[:12]


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def lan_address() -> str:
    """This machine's address on the local network, as others in the room would type it (no packet is sent:
    connecting a UDP socket only picks the outgoing interface)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


@dataclass
class Room:
    """The people a workshop app lets in and where their runs live."""

    token: str
    participants: int = 30
    runs: Path = Path("runs")

    def __post_init__(self) -> None:
        if len(self.token) < MIN_TOKEN:
            raise ValueError(f"the access token must have at least {MIN_TOKEN} characters")
        self.runs = Path(self.runs)

    @property
    def names(self) -> list[str]:
        """Participant logins: p01, p02, ..."""
        return [f"p{i:02d}" for i in range(1, self.participants + 1)]

    def logins(self) -> list[tuple[str, str]]:
        """(name, password) of every participant, for the instructor to hand out."""
        return [(n, participant_token(self.token, n)) for n in self.names]

    def check(self, username: str, password: str) -> bool:
        """Gradio's auth callback: the instructor's token, or a participant's own password."""
        if username == INSTRUCTOR:
            return hmac.compare_digest(password, self.token)
        if username not in self.names:
            return False
        return hmac.compare_digest(password, participant_token(self.token, username))

    def is_instructor(self, user: str | None) -> bool:
        """True for the instructor."""
        return user == INSTRUCTOR

    @property
    def gallery(self) -> Path:
        """Runs the instructor published to everyone."""
        return self.runs / "gallery"

    def runs_of(self, user: str | None) -> Path:
        """Where `user`'s training runs go (the instructor's: the runs directory itself)."""
        if user is None or self.is_instructor(user):
            return self.runs
        if user not in self.names:
            raise PermissionError(f"unknown participant {user!r}")
        return self.runs / "participants" / user

    def run_dirs(self, user: str | None) -> list[Path]:
        """The folders whose runs `user` may open besides the shipped ones: the gallery and their own runs (the
        instructor: every participant's too; nobody logged in: the gallery only)."""
        if user is None:
            return [self.gallery]
        if self.is_instructor(user):
            return [self.gallery, self.runs, *sorted((self.runs / "participants").glob("p*"))]
        return [self.gallery, self.runs_of(user)]

    def publish(self, run: Path | str) -> Path:
        """Copy `run` into the gallery (its folder name prefixed with its owner's login); returns the copy. Only
        the instructor's page offers this."""
        run = Path(run).resolve()
        owner = run.parent.name if run.parent.parent.name == "participants" else "instructor"
        target = self.gallery / f"{owner}-{run.name}"
        if target.exists():
            raise ValueError(f"{target.name} is already in the gallery")
        self.gallery.mkdir(parents=True, exist_ok=True)
        shutil.copytree(run, target, ignore=shutil.ignore_patterns("data", "recordings", ".*.tmp"), symlinks=False)
        return target


_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)


class HideApiBeforeLogin:
    """ASGI middleware for an app with logins: the login page Gradio serves to a visitor who has not signed in
    also carries the description of every API endpoint, whose defaults and choices are the server's own paths
    (where its checkpoints and the gallery live). This blanks that description on the login page; signed-in
    pages and every other route pass through untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"].rstrip("/") != "":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if b'"auth_required":true' in body:
                body = _API_INFO.sub(b"window.gradio_api_info = null;</script>", body, count=1)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
