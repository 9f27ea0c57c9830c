"""Outcome labels (was the task resolved?) from wherever real runs keep them, matched to trajectories
by instance id within the same run folder.

Looked for in each folder from the trajectory's up to its run root (at most five levels):
- `index.csv` (the shared data's: traj_file, resolved),
- a SWE-bench harness report, `<model>.<run_id>.json` (resolved_ids, unresolved_ids, ...), the
  one whose run id names the trajectory's run folder (`output/<run_id>/...`) first,
- an sb-cli report (`sb-cli-reports/*.json`, the same ids, or under "report"),
- the harness's per-instance `logs/run_evaluation/<run_id>/<model>/<instance>/report.json`,
- `results_summary.json`, and SWE-agent's `results.json` (or `results/results.json`).
A file given with `--labels` (CSV `instance_id,resolved`, or JSON: {id: bool}, a list of rows, or
any of the reports above) comes before all of them."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.errors import TetherError

SEARCH_DEPTH = 5
LABEL_FILES = ("results_summary.json", "results.json")
TRUE_WORDS = {"true", "1", "yes", "resolved", "pass", "passed"}
FALSE_WORDS = {"false", "0", "no", "unresolved", "fail", "failed"}


class LabelError(TetherError):
    """A labels file that cannot be read; the message names the file and the row."""


@dataclass(frozen=True)
class Labels:
    """instance id (or a trajectory's resolved path) -> resolved, and the file they were read from."""
    source: str
    resolved: dict[str, bool]


@dataclass
class LabelFinder:
    """Finds each trajectory's labels, reading each labels file once; remembers where it looked."""
    given: Labels | None = None
    looked: list[str] = field(default_factory=list)
    _cache: dict[Path, list[Labels]] = field(default_factory=dict)

    def label(self, trajectory: Path, instance_id: str) -> tuple[bool | None, str | None]:
        """(resolved, the file that said so), or (None, None)."""
        key = str(trajectory.resolve())
        candidates = [self.given] if self.given is not None else []
        for folder in [trajectory.parent, *trajectory.parents][:SEARCH_DEPTH]:
            candidates += self._in(folder, trajectory)
        for labels in candidates:
            for wanted in (key, instance_id):
                if wanted in labels.resolved:
                    return labels.resolved[wanted], labels.source
        return None, None

    def _in(self, folder: Path, trajectory: Path) -> list[Labels]:
        if folder not in self._cache:
            self.looked.append(str(folder))
            found: list[Labels] = []
            for reader in READERS:
                found += reader(folder)
            self._cache[folder] = found
        run_folder = _run_folder(trajectory, folder)

        def of_another_run(labels: Labels) -> bool:
            return run_folder is None or (f".{run_folder}." not in Path(labels.source).name
                                          and f"/{run_folder}/" not in labels.source)
        return sorted(self._cache[folder], key=of_another_run)  # the trajectory's own run's report first


def _run_folder(trajectory: Path, root: Path) -> str | None:
    """The name of the folder right under `root`'s output/ (or under root) that holds the trajectory."""
    try:
        parts = trajectory.relative_to(root).parts
    except ValueError:
        return None
    if len(parts) > 2 and parts[0] == "output":
        return parts[1]
    return parts[0] if len(parts) > 1 else None


def read_labels_file(path: Path) -> Labels:
    """A user's labels: CSV with instance_id and resolved columns, or JSON in any known shape."""
    if not path.is_file():
        raise LabelError(f"{path}: no such labels file")
    if path.suffix.lower() == ".csv":
        return _csv_labels(path, lambda row: row.get("instance_id") or row.get("instance") or "")
    data = _json(path)
    resolved = _from_report(data)
    if resolved is None and isinstance(data, dict) and all(isinstance(v, bool | str | int) for v in data.values()):
        resolved = {str(key): _truth(value, f"{path}: {key}") for key, value in data.items()}
    if resolved is None and isinstance(data, list):
        resolved = {}
        for number, row in enumerate(data):
            if not isinstance(row, dict) or "instance_id" not in row or "resolved" not in row:
                raise LabelError(f"{path}: item {number}: expected an object with instance_id and resolved")
            resolved[str(row["instance_id"])] = _truth(row["resolved"], f"{path}: item {number}")
    if resolved is None:
        raise LabelError(f"{path}: not a labels file: expected {{instance id: true/false}}, a list of "
                         "{instance_id, resolved}, or a SWE-bench report with resolved_ids")
    return Labels(str(path), resolved)


def _truth(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise LabelError(f"{where}: {value!r} is not a label (true or false)")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelError(f"{path}: cannot read JSON: {exc}") from exc


def _csv_labels(path: Path, key: Callable[[dict[str, str]], str]) -> Labels:
    resolved: dict[str, bool] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if "resolved" not in (reader.fieldnames or []):
            raise LabelError(f"{path}: no 'resolved' column (columns: {', '.join(reader.fieldnames or [])})")
        for number, row in enumerate(reader, start=2):
            if row.get("resolved") in ("", None):
                continue  # not evaluated: no label
            name = key(row)
            if not name:
                raise LabelError(f"{path}:{number}: the row names no run")
            resolved[name] = _truth(row["resolved"], f"{path}:{number}")
    return Labels(str(path), resolved)


def _from_report(data: Any) -> dict[str, bool] | None:
    """The ids of a SWE-bench harness or sb-cli report (or SWE-agent's results.json), or None."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("report"), dict):  # sb-cli wraps the harness's ids
        data = data["report"]
    if isinstance(data.get("instances"), list):  # results_summary.json
        return {str(row["instance_id"]): bool(row.get("resolved")) for row in data["instances"]
                if isinstance(row, dict) and "instance_id" in row}
    keys = ("resolved_ids", "resolved", "unresolved_ids", "error_ids", "empty_patch_ids")
    if not any(isinstance(data.get(key), list) for key in keys):
        return None
    labels: dict[str, bool] = {}
    # An instance whose evaluation errored has no outcome: it is left unlabelled, not counted as failed.
    for key in ("unresolved_ids", "empty_patch_ids"):
        labels.update({str(instance): False for instance in data.get(key) or [] if isinstance(instance, str)})
    for key in ("resolved_ids", "resolved"):
        labels.update({str(instance): True for instance in data.get(key) or [] if isinstance(instance, str)})
    return labels


# readers: a folder -> the labels kept in it ---------------------------------------------------------

def _index_csv(folder: Path) -> list[Labels]:
    index = folder / "index.csv"
    if not index.is_file():
        return []
    def key(row: dict[str, str]) -> str:
        if row.get("traj_file"):
            return str((folder / row["traj_file"]).resolve())
        return row.get("instance_id", "")
    return [_csv_labels(index, key)]


def _reports(folder: Path) -> list[Labels]:
    """Harness reports (`<model>.<run_id>.json`), sb-cli reports, results files, in this folder."""
    found = []
    files = [*sorted(folder.glob("*.json")), *sorted((folder / "sb-cli-reports").glob("*.json")),
             folder / "results" / "results.json"]
    for path in files:
        if not path.is_file() or path.stat().st_size > 50 << 20 or path.name.endswith(".traj.json"):
            continue
        named = path.name in LABEL_FILES  # a file by a labels file's name must be one
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            if named:
                raise LabelError(f"{path}: cannot read JSON: {exc}") from exc
            continue  # a JSON file that is not a report (predictions, a config)
        resolved = _from_report(data)
        if resolved is None and named:
            raise LabelError(f"{path}: not in a known labels shape (expected \"instances\" or resolved_ids)")
        if resolved:
            found.append(Labels(str(path), resolved))
    return found


def _instance_reports(folder: Path) -> list[Labels]:
    """The harness's logs/run_evaluation/<run_id>/<model>/<instance>/report.json, one per run id."""
    root = folder / "logs" / "run_evaluation"
    if not root.is_dir():
        return []
    found = []
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        resolved: dict[str, bool] = {}
        for report in sorted(run.glob("*/*/report.json")):
            try:
                data = json.loads(report.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            for instance, result in (data.items() if isinstance(data, dict) else []):
                if isinstance(result, dict) and isinstance(result.get("resolved"), bool):
                    resolved[str(instance)] = result["resolved"]
        if resolved:
            found.append(Labels(f"{run}/", resolved))
    return found


READERS: tuple[Callable[[Path], list[Labels]], ...] = (_index_csv, _reports, _instance_reports)


@dataclass(frozen=True)
class LabelReport:
    """Where the labels came from, how many runs have none, and where they were looked for."""
    sources: dict[str, int]
    unlabelled: int
    runs: int
    looked_in: list[str]

    @property
    def loud(self) -> bool:
        """More than a few runs unlabelled: the rates leave them out, and the user must know."""
        return self.unlabelled > max(3, self.runs // 100)

    def as_dict(self) -> dict[str, Any]:
        return {"sources": self.sources, "unlabelled": self.unlabelled, "runs": self.runs,
                "looked_in": self.looked_in}


def label_report(sources: list[str | None], finder: LabelFinder) -> LabelReport:
    counted: dict[str, int] = {}
    for source in sources:
        if source is not None:
            counted[source] = counted.get(source, 0) + 1
    return LabelReport(dict(sorted(counted.items(), key=lambda item: -item[1])), sources.count(None),
                       len(sources), finder.looked)
