"""`python -m freshcast.local COMMAND`: the command line behind make run, stop, status, rollback
and replay (and `login`, which prints the UI's address, user and password).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from freshcast.local.commands import replay, rollback_pipeline, run_pipeline
from freshcast.local.config import (
    DATABASE_ENV,
    PROJECT_ROOT,
    USER,
    Airflow,
    LocalRunError,
    password,
)
from freshcast.local.processes import stop, up
from freshcast.local.status import status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freshcast.local", description=__doc__)
    parser.add_argument(
        "command", choices=["up", "run", "stop", "status", "login", "rollback", "replay"]
    )
    parser.add_argument("--pipeline", default="seattle_weather")
    parser.add_argument("--conf", default="", help='JSON run conf, e.g. {"epochs": 3}')
    parser.add_argument("--version", type=int, help="rollback: the registry version to serve")
    parser.add_argument("--reason", default="manual rollback", help="rollback: why")
    parser.add_argument("--start", help="replay: first date, YYYY-MM-DD")
    parser.add_argument("--end", help="replay: last date, YYYY-MM-DD")
    parser.add_argument(
        "--json", action="store_true", help="status: the pids and health report as JSON"
    )
    parser.add_argument(
        "--training-slots", type=int, default=int(os.environ.get("TRAINING_POOL_SLOTS", "2"))
    )
    args = parser.parse_args(argv)
    af = Airflow(
        home=Path(os.environ.get("AIRFLOW_HOME") or PROJECT_ROOT / ".airflow"),
        port=int(os.environ.get("AIRFLOW_PORT", "8080")),
        database=os.environ.get(DATABASE_ENV) or None,
    )
    pools = {"training": args.training_slots}
    try:
        if args.command == "stop":
            stop(af)
        elif args.command == "up":
            up(af, pools=pools)
        elif args.command == "status":
            return status(af, as_json=args.json)
        elif args.command == "rollback":
            if not args.version:
                raise LocalRunError("rollback needs --version N (make rollback VERSION=N)")
            return rollback_pipeline(af, args.pipeline, version=args.version, reason=args.reason)
        elif args.command == "replay":
            if not (args.start and args.end):
                raise LocalRunError(
                    "replay needs --start and --end (make replay START=... END=...)"
                )
            return replay(af, args.pipeline, start=args.start, end=args.end, pools=pools)
        elif args.command == "login":
            print(f"{af.url}  user: {USER}  password: {password(af, timeout=1)}")
        else:
            try:
                conf = json.loads(args.conf) if args.conf.strip() else {}
            except json.JSONDecodeError as err:
                raise LocalRunError(
                    f"CONF is not valid JSON: {err}. Received: {args.conf}"
                ) from err
            return run_pipeline(af, args.pipeline, conf=conf, pools=pools)
    except LocalRunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nstopped following; Airflow goes on at {af.url} (`make stop` stops it)")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
