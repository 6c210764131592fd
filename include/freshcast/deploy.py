"""`make env`: write the `.env` that docker-compose.yaml reads, with fresh random secrets.

Standard library only, so it runs before any virtualenv exists. An existing `.env` is never
overwritten: its secrets protect a database and a Fernet-encrypted store that already use them.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path

# Every variable docker-compose.yaml requires (`${NAME:?run make env}`), with how to make it.
SECRETS = {
    "POSTGRES_PASSWORD": lambda: secrets.token_hex(24),
    "REDIS_PASSWORD": lambda: secrets.token_hex(24),  # hex: it goes inside the broker URL
    "AIRFLOW_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(64),
    "AIRFLOW_API_SECRET_KEY": lambda: secrets.token_urlsafe(48),
    "AIRFLOW_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18),
    "FLOWER_PASSWORD": lambda: secrets.token_urlsafe(18),
    "MINIO_ROOT_PASSWORD": lambda: secrets.token_urlsafe(24),
}


def env_text(*, uid: int) -> str:
    """The contents of a new `.env`: settings, then one fresh value per secret."""
    lines = [
        f"# Written by `make env` on {datetime.now(UTC):%Y-%m-%d}: secrets for docker compose.",
        "# Never commit this file (.gitignore lists it). Delete it only with the volumes:",
        "# `docker compose down -v`, since Postgres and the Fernet key keep using these values.",
        f"AIRFLOW_UID={uid}",
        "MINIO_ROOT_USER=freshcast",
    ]
    lines += [f"{name}={make()}" for name, make in SECRETS.items()]
    return "\n".join(lines) + "\n"


def write_env(path: Path, *, uid: int | None = None) -> bool:
    """Create `path` (mode 600) unless it exists; True when it was written."""
    if path.exists():
        return False
    text = env_text(uid=os.getuid() if uid is None else uid)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return True


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else ".env")
    if write_env(path):
        print(f"wrote {path} with fresh secrets (admin password: AIRFLOW_ADMIN_PASSWORD in it)")
    else:
        print(f"{path} exists; kept it. Delete it with the volumes to start over.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
