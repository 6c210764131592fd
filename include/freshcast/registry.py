"""The model registry of one pipeline: numbered forecast bundles, a champion pointer, a history.

Layout under `<root>/<pipeline>/registry/`:

    versions/v0001/      a self-contained forecast bundle (model.keras, scaler.json, spec.json,
                         bundle.json, sample_*.npy) with its manifest.json written last
    champion.json        the pointer: which version is in service, since when and why
    history/000001.json  one file per event, numbered: promoted, refused, rolled_back (by runs);
                         damaged, restored, repaired (by the registry healing itself)

Every change is made so that a crash at any point leaves the registry readable and the champion
unchanged or fully changed:
- a bundle is assembled in `versions/.tmp-*` of the working copy and renamed onto `vNNNN` when
  complete; in a store with a URL root it is then published, its manifest last (see
  `artifacts.Store`). A version without a manifest, or a temporary folder, is never listed;
- the pointer is replaced whole (temp file + rename; one PUT in an object store) and carries its
  own event, so an event lost to a crash between the pointer and the history is written back on
  the next change;
- changes run under a file lock, so a training run and a rollback on one machine never
  interleave; across machines the DAGs run `promote` and `rollback` in the one-slot Airflow pool
  `registry`.

The history is the source of truth. `heal` (run by every step that reads the champion, and by
`python -m freshcast.registry check`) puts the registry back in order from it: a missing or
damaged pointer is rebuilt from the last event that set a champion; a champion bundle whose
files no longer match their manifest is reported once (a `damaged` event) and the newest earlier
champion, or else the newest version, whose files verify takes over (a `restored` event). With
none left it says what to do, and never reports "no champion" while the history has one.

This module never imports TensorFlow: loading and checking a model happens in `serving`, which
callers pass in as `verify`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from freshcast import artifacts
from freshcast.artifacts import ArtifactError, read_json, read_manifest, write_json, write_manifest
from freshcast.display import version_label
from freshcast.errors import BadInputError

POINTER = "champion.json"
_VERSION_PREFIX = "v"
# Events that set the champion: the pointer always carries the newest of them.
CHAMPION_KINDS = ("promoted", "rolled_back", "restored")


class RegistryError(BadInputError, RuntimeError):
    """A registry request that cannot be met (unknown version, broken bundle); says the fix."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def version_name(version: int) -> str:
    return f"{_VERSION_PREFIX}{version:04d}"


def git_commit() -> str | None:
    """The project's git commit when known: env FRESHCAST_GIT_COMMIT (images), else `git`."""
    if commit := os.environ.get("FRESHCAST_GIT_COMMIT"):
        return commit
    if not (artifacts.PROJECT_ROOT / ".git").exists():
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "-C", str(artifacts.PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or None
    return None


class Registry:
    """The registry of one pipeline in the artifact store."""

    def __init__(self, pipeline: str, *, root: Path | None = None) -> None:
        self.pipeline = pipeline
        self.store = artifacts.store() if root is None else artifacts.Store(root)
        self.dir = self.store.local / pipeline / "registry"
        self.versions_dir = self.dir / "versions"
        self.history_dir = self.dir / "history"

    # ------------------------------------------------------------------------------- reading

    def versions(self) -> list[int]:
        """Complete versions (bundle renamed into place, manifest present), oldest first."""
        found = []
        for name in self.store.names(self.versions_dir):
            if name.startswith(_VERSION_PREFIX) and name[1:].isdigit():
                if self.store.published(self.versions_dir / name):
                    found.append(int(name[1:]))
        return sorted(found)

    def bundle_dir(self, version: int) -> Path:
        return self.versions_dir / version_name(version)

    def bundle(self, version: int, *, verify: bool = True) -> dict[str, Any]:
        """A version's `bundle.json`, every file of the bundle checked against its manifest."""
        if version not in self.versions():
            raise RegistryError(
                f"pipeline {self.pipeline!r} has no version {version}; it has "
                f"{self.versions() or 'none'}. List them with "
                f"`python -m freshcast.registry show {self.pipeline}`."
            )
        folder = self.bundle_dir(version)
        read_manifest(folder, verify=verify)  # fetched from the store first
        return read_json(folder / "bundle.json")

    def meta(self, version: int) -> dict[str, Any]:
        """A listed version's `bundle.json` alone (no model download, no checks)."""
        path = self.bundle_dir(version) / "bundle.json"
        self.store.get(path)
        return read_json(path)

    def champion(self) -> dict[str, Any] | None:
        """The pointer (version, since, event) as written, or None when there is none or it is
        damaged. Steps that serve or compare use `heal`, which rebuilds a lost pointer."""
        return self._read_pointer()[0]

    def _read_pointer(self) -> tuple[dict[str, Any] | None, str | None]:
        """(pointer, what is wrong with it): (None, None) when there is no pointer file."""
        path = self.dir / POINTER
        if not self.store.get(path):
            return None, None
        try:
            pointer = read_json(path)
            event = pointer["event"]
            if not (
                isinstance(pointer["version"], int)
                and isinstance(event["seq"], int)
                and event["version"] == pointer["version"]
            ):
                raise ValueError("its version and its event do not agree")
        except (ValueError, KeyError, TypeError) as err:
            return None, f"{POINTER} is damaged ({type(err).__name__}: {str(err)[:120]})"
        return pointer, None

    def history(self) -> list[dict[str, Any]]:
        """Every event, oldest first; the champion's own event is included even if a crash lost
        its history file."""
        events = {}
        for name in self.store.names(self.history_dir):
            if not (name.endswith(".json") and name[:-5].isdigit()):
                continue
            path = self.history_dir / name
            if not path.exists():  # an event never changes once written
                self.store.get(path)
            try:
                event = read_json(path)
                events[int(event["seq"])] = event
            except (ValueError, KeyError, TypeError):
                continue  # an unreadable event file is reported by `check`
        pointer = self.champion()
        if pointer and pointer["event"]["seq"] not in events:
            events[pointer["event"]["seq"]] = pointer["event"]
        return [events[k] for k in sorted(events)]

    def find_event(self, *, run_id: str, kinds: tuple[str, ...]) -> dict[str, Any] | None:
        """The latest event of one of `kinds` recorded by run `run_id`, if any."""
        for event in reversed(self.history()):
            if event.get("run_id") == run_id and event["kind"] in kinds:
                return event
        return None

    def last_champion_event(self) -> dict[str, Any] | None:
        """The newest event that set the champion: what the pointer must say."""
        for event in reversed(self.history()):
            if event["kind"] in CHAMPION_KINDS:
                return event
        return None

    def bundle_problem(self, version: int) -> str | None:
        """Why version `version` cannot be served (missing, or a file that does not match its
        manifest), or None when every file of its bundle verifies."""
        if version not in self.versions():
            return f"v{version} is not in the registry (its folder is missing or unfinished)"
        try:
            read_manifest(self.bundle_dir(version), verify=True)
            read_json(self.bundle_dir(version) / "bundle.json")
        except (ArtifactError, ValueError) as err:
            # The artifacts' generic advice ("rerun the task that writes it") does not apply to
            # a stored version: `heal` and `check` say what to do instead.
            return re.sub(r"[;.] [Rr]erun the task that writes it\.?$", "", str(err))
        return None

    def problems(self, *, verify: bool = True) -> list[str]:
        """What is wrong with the pointer and (with `verify`) the champion's bundle, read only;
        `heal` repairs it."""
        expected = self.last_champion_event()
        pointer, damaged = self._read_pointer()
        found = []
        if damaged:
            found.append(damaged)
        if expected is None:
            return found
        if pointer is None and not damaged:
            found.append(f"{POINTER} is missing; the history says v{expected['version']}")
        elif pointer is not None and pointer["event"]["seq"] != expected["seq"]:
            found.append(
                f"{POINTER} says v{pointer['version']} (event #{pointer['event']['seq']}), the "
                f"history's last change is #{expected['seq']} (v{expected['version']})"
            )
        if verify and (problem := self.bundle_problem(expected["version"])):
            found.append(f"champion v{expected['version']} fails its check: {problem}")
        return found

    def last_decision(self) -> dict[str, Any] | None:
        """The newest event of a training run that reached a decision (promoted or refused)."""
        for event in reversed(self.history()):
            if event["kind"] in ("promoted", "refused"):
                return event
        return None

    @property
    def replay_marker(self) -> Path:
        return self.dir / "replay.json"

    def active_replay(self) -> dict[str, Any] | None:
        """The replay in progress (see `start_replay`), or None; an expired marker is ignored."""
        if not self.store.get(self.replay_marker):
            return None
        marker = read_json(self.replay_marker)
        if datetime.fromisoformat(marker["expires"]) < datetime.now(UTC):
            return None
        return marker

    def start_replay(self, *, start: str, end: str, hours: float = 24.0) -> dict[str, Any]:
        """Mark a replay (a backfill of past dates) as running: until `end_replay` or `hours`,
        runs that are not part of it skip training, so no run on today's data interleaves."""
        from datetime import timedelta

        expires = datetime.now(UTC) + timedelta(hours=hours)
        marker = {"start": start, "end": end, "at": now(), "expires": expires.isoformat()}
        write_json(self.replay_marker, marker)
        self.store.put(self.replay_marker)
        return marker

    def end_replay(self) -> None:
        self.store.remove(self.replay_marker)

    # ------------------------------------------------------------------------------- changing

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the registry's lock (a POSIX file lock in the working copy; blocks until free).

        It serialises the processes of one machine. Across machines the DAGs run every change
        (promote, rollback) in the one-slot Airflow pool `registry`.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def record(self, kind: str, *, run_id: str | None, **fields: Any) -> dict[str, Any]:
        """Append one event to the history (call under `lock`); returns it with its number."""
        self._repair()
        event = {"seq": self._next_seq(), "kind": kind, "at": now(), "run_id": run_id, **fields}
        self._write_event(event)
        return event

    def add_version(
        self,
        files: Mapping[str, Path],
        *,
        meta: Mapping[str, Any],
        run_id: str,
    ) -> int:
        """Store a new bundle (call under `lock`): copy `files`, write `bundle.json` with
        `meta`, the manifest last, then rename the folder into place as the next version.

        A run that already added a version (a retried task) gets that version back.
        """
        for version in reversed(self.versions()):
            if self.meta(version)["lineage"]["run_id"] == run_id:
                return version
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        version = max(self.versions() + self._all_version_numbers(), default=0) + 1
        tmp = self.versions_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            outputs = {}
            for name, src in files.items():
                dst = tmp / Path(src).name
                shutil.copyfile(src, dst)
                outputs[name] = dst
            bundle = {"pipeline": self.pipeline, "version": version, **meta}
            outputs["bundle"] = write_json(tmp / "bundle.json", bundle)
            # Output paths in the manifest are relative, so they hold after the rename.
            write_manifest(tmp, step="bundle", outputs=outputs, params={"version": version})
            os.rename(tmp, self.bundle_dir(version))  # atomic: the version appears complete
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.store.publish(self.bundle_dir(version))  # a URL root: files first, manifest last
        return version

    def set_champion(self, version: int, *, event: dict[str, Any]) -> dict[str, Any]:
        """Point the champion at `version` atomically (call under `lock`), then log `event`.

        The pointer carries the event, so a crash between the two steps loses nothing.
        """
        self._repair()
        event = {"seq": self._next_seq(), "at": now(), **event, "version": version}
        pointer = self._write_pointer(event)
        self._write_event(event)
        return pointer

    def heal(self, *, run_id: str | None = None) -> dict[str, Any]:
        """Put the champion back in order from the history (call under `lock`).

        Returns {"version": the champion now (None without one), "pointer", "actions": what
        was repaired, in words, "problem": why there is no champion although the history has
        one, with the fix}. A healthy registry costs one check of the champion's files.
        """
        self._repair()
        expected = self.last_champion_event()
        pointer, damaged = self._read_pointer()
        actions: list[str] = []
        if expected is None:
            if damaged:  # a pointer without any history: nothing was ever promoted through it
                self.store.remove(self.dir / POINTER)
                actions.append(f"removed {POINTER}: {damaged} and the history names no champion")
                self.record("repaired", run_id=run_id, actions=actions)
            return {"version": None, "pointer": None, "actions": actions, "problem": None}
        version = expected["version"]
        problem = self.bundle_problem(version)
        if problem is None:
            if pointer is None or pointer["event"]["seq"] != expected["seq"]:
                why = damaged or (
                    f"{POINTER} was missing"
                    if pointer is None
                    else f"{POINTER} said v{pointer['version']}, an older event"
                )
                pointer = self._write_pointer(expected)
                actions.append(f"{why}; rebuilt it from event #{expected['seq']}: v{version}")
                self.record("repaired", run_id=run_id, actions=actions)
            return {"version": version, "pointer": pointer, "actions": actions, "problem": None}

        if not self._reported(version, since=expected["seq"]):
            self.record("damaged", run_id=run_id, version=version, problem=problem)
        actions.append(f"champion v{version} fails its check: {problem}")
        for fallback in self._fallbacks(exclude=version):
            if self.bundle_problem(fallback) is None:
                reason = (
                    f"v{version} fails its check; v{fallback} is the newest earlier champion or "
                    "version whose files verify"
                )
                pointer = self.set_champion(
                    fallback,
                    event={
                        "kind": "restored",
                        "run_id": run_id,
                        "from_version": version,
                        "reason": reason,
                        "problem": problem,
                    },
                )
                actions.append(f"serving v{fallback} instead")
                return {
                    "version": fallback,
                    "pointer": pointer,
                    "actions": actions,
                    "problem": None,
                }
        fix = (
            f"champion v{version} of {self.pipeline} fails its check and no other version "
            f"verifies ({problem}). Train a new champion: trigger train_{self.pipeline} with "
            'conf {"force": true} (it is compared with the baselines only), or put the '
            f"version's original files back and run `python -m freshcast.registry check "
            f"{self.pipeline}`."
        )
        return {"version": None, "pointer": None, "actions": actions, "problem": fix}

    def _reported(self, version: int, *, since: int) -> bool:
        """Whether a `damaged` event for `version` was recorded after event `since`."""
        return any(
            e["kind"] == "damaged" and e.get("version") == version and e["seq"] > since
            for e in self.history()
        )

    def _fallbacks(self, *, exclude: int) -> list[int]:
        """Versions to serve instead of `exclude`, best first: earlier champions, newest
        first, then every other kept version, newest first."""
        kept = self.versions()
        order = [
            e["version"] for e in reversed(self.history()) if e["kind"] in CHAMPION_KINDS
        ] + kept[::-1]
        return [v for v in dict.fromkeys(order) if v != exclude and v in kept]

    def _write_pointer(self, event: dict[str, Any]) -> dict[str, Any]:
        version = event["version"]
        pointer = {
            "pipeline": self.pipeline,
            "version": version,
            "bundle": version_name(version),
            "since": event["at"],
            "run_id": event.get("run_id"),
            "event": event,
        }
        write_json(self.dir / POINTER, pointer)
        self.store.put(self.dir / POINTER)
        return pointer

    def prune(self, keep: int) -> list[int]:
        """Delete all but the newest `keep` versions, never the champion; drop stale temp
        folders. Returns the deleted versions."""
        # Neither the pointer's version nor the history's, should the two ever disagree.
        serving = {(self.champion() or {}).get("version")}
        serving.add((self.last_champion_event() or {}).get("version"))
        versions = self.versions()
        doomed = [v for v in versions[: max(len(versions) - keep, 0)] if v not in serving]
        for version in doomed:
            self.store.remove(self.bundle_dir(version))
        for tmp in self.versions_dir.glob(".tmp-*") if self.versions_dir.exists() else ():
            shutil.rmtree(tmp, ignore_errors=True)
        return doomed

    # ------------------------------------------------------------------------------- internals

    def _all_version_numbers(self) -> list[int]:
        """Numbers of every version folder, complete or not, so a number is never reused."""
        local = [p.name for p in self.versions_dir.iterdir()] if self.versions_dir.is_dir() else []
        return [
            int(name[1:])
            for name in {*local, *self.store.names(self.versions_dir)}
            if name.startswith(_VERSION_PREFIX) and name[1:].isdigit()
        ]

    def _next_seq(self) -> int:
        return max((e["seq"] for e in self.history()), default=0) + 1

    def _write_event(self, event: dict[str, Any]) -> None:
        path = write_json(self.history_dir / f"{event['seq']:06d}.json", event)
        self.store.put(path)

    def _repair(self) -> None:
        """Write the champion's event to the history if a crash lost it."""
        pointer = self.champion()
        if pointer and not self.store.get(self.history_dir / f"{pointer['event']['seq']:06d}.json"):
            self._write_event(pointer["event"])


def rollback(
    registry: Registry,
    version: int,
    *,
    run_id: str | None,
    reason: str,
    verify: Callable[[Path], dict[str, Any]],
) -> dict[str, Any]:
    """Make an earlier (or any kept) version the champion again, after checking it loads and
    predicts in a fresh process. Recorded in the history as `rolled_back`."""
    with registry.lock():
        registry.bundle(version)  # every file against its manifest, or RegistryError
        current = registry.last_champion_event()  # the history's champion, pointer or not
        check = verify(registry.bundle_dir(version))
        return registry.set_champion(
            version,
            event={
                "kind": "rolled_back",
                "run_id": run_id,
                "from_version": current["version"] if current else None,
                "reason": reason,
                "verified": check,
            },
        )


def verify_in_fresh_process(bundle_dir: Path, *, timeout: float = 600) -> dict[str, Any]:
    """Load the bundle in a new Python process (safe_mode, sha256) and predict its sample.

    Raises:
        RegistryError: with the child's error when it cannot load or predicts differently.
    """
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        # The bundle is in this process's working copy already; the child reads it there and
        # needs no credentials for a URL store (the DAGs get those from an Airflow connection).
        artifacts.ARTIFACT_ROOT_ENV: str(artifacts.artifact_root()),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "freshcast.serving", "verify", str(bundle_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        detail = proc.stderr.strip().splitlines()[-3:] or lines[-3:]
        raise RegistryError(
            f"bundle {bundle_dir} failed its check in a fresh process (exit {proc.returncode}): "
            + " | ".join(detail)
        )
    import json

    return json.loads(lines[-1])


# ----------------------------------------------------------------------------------- the CLI


def describe(registry: Registry) -> str:
    """Versions, champion, problems and history as text, for `python -m freshcast.registry
    show` (read only: `check` repairs)."""
    pointer = registry.champion()
    expected = registry.last_champion_event()
    lines = [f"registry of {registry.pipeline}: {registry.store.where(registry.dir)}"]
    if pointer:
        lines.append(f"champion: v{pointer['version']} since {pointer['since']}")
    elif expected:
        lines.append(f"champion: v{expected['version']} since {expected['at']} (per the history)")
    else:
        lines.append("champion: none")
    problems = registry.problems()
    if problems:
        lines.append(
            "problems (the next run repairs them, or now: "
            f"`python -m freshcast.registry check {registry.pipeline}`):"
        )
        lines.extend(f"  ! {problem}" for problem in problems)
    serving = (pointer or expected or {}).get("version")
    lines.append("versions:")
    for version in registry.versions():
        try:
            meta = registry.meta(version)
        except (ArtifactError, ValueError):
            lines.append(f"   v{version}  (bundle.json unreadable)")
            continue
        mark = "*" if serving == version else " "
        metric = meta.get("metric", "mae")
        score = meta.get("scores", {}).get(metric)
        lines.append(
            f" {mark} v{version}  {meta['model']['name']:<12} {metric}={_fmt(score)}  "
            f"run {meta['lineage']['run_id']}  data to {meta['lineage'].get('data_end')}"
        )
    lines.append("history:")
    for event in registry.history():
        lines.append(f"  #{event['seq']} {event['at']} {event['kind']:<11} {_summary(event)}")
    return "\n".join(lines)


def _summary(event: Mapping[str, Any]) -> str:
    kind = event["kind"]
    if kind in ("rolled_back", "restored"):
        moved = f"{version_label(event.get('from_version'))} -> v{event['version']}"
        return f"{moved}: {event.get('reason', '')}"
    if kind == "damaged":
        return f"v{event.get('version')}: {event.get('problem', '')}"
    if kind == "repaired":
        return "; ".join(event.get("actions", []))
    if kind == "drift":
        return f"forecast run {event.get('run_id')}: {event.get('reason', '')}"
    decision = event.get("decision", {})
    started = f" ({decision['trigger']})" if decision.get("trigger") else ""
    parts = [f"run {event.get('run_id')}{started}"]
    if kind == "promoted":
        parts.append(f"-> v{event['version']}")
    parts.append("; ".join(decision.get("reasons", [])))
    return " ".join(p for p in parts if p)


def check(registry: Registry) -> tuple[list[str], bool]:
    """Verify every bundle, the pointer and the history; repair what can be repaired.

    Returns (lines saying what was found and done, whether a champion is served afterwards or
    none was ever promoted).
    """
    lines = []
    for version in registry.versions():
        problem = registry.bundle_problem(version)
        lines.append(f"v{version}: " + (f"FAILS: {problem}" if problem else "files verify"))
    seqs = [event["seq"] for event in registry.history()]
    gaps = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
    lines.append(
        f"history: {len(seqs)} event(s)"
        + (
            f"; missing or unreadable: {', '.join(f'#{n}' for n in gaps)}"
            if gaps
            else ", contiguous"
        )
    )
    with registry.lock():
        healed = registry.heal(run_id=None)
        stale = (
            [p for p in registry.versions_dir.glob(".tmp-*")]
            if registry.versions_dir.is_dir()
            else []
        )
        for tmp in stale:
            shutil.rmtree(tmp, ignore_errors=True)
    if healed["actions"]:
        lines.append("repairs:")
        lines.extend(f"  {action}" for action in healed["actions"])
    if stale:
        lines.append(f"removed {len(stale)} unfinished bundle folder(s) left by a crash")
    if healed["problem"]:
        lines.append(f"NOT REPAIRED: {healed['problem']}")
    elif healed["version"] is not None:
        lines.append(f"champion: v{healed['version']} (files verify)")
    else:
        lines.append("champion: none (nothing was promoted yet)")
    return lines, healed["problem"] is None


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m freshcast.registry",
        description="Show, check and repair a pipeline's model registry.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="versions, champion, problems and history")
    show.add_argument("pipeline")
    repair = sub.add_parser(
        "check", help="verify every bundle, the pointer and the history; repair what it can"
    )
    repair.add_argument("pipeline")
    args = parser.parse_args(argv)
    registry = Registry(args.pipeline)
    if args.command == "show":
        print(describe(registry))
        return 0
    lines, ok = check(registry)
    print(
        "\n".join(
            [f"registry of {registry.pipeline}: {registry.store.where(registry.dir)}", *lines]
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
