"""Outcome labels where real runs keep them: the SWE-bench harness's report beside mini-swe-agent 2.x's
output folder (the layout in which the backtest once read no label at all), its per-instance
reports, sb-cli reports, a user's file; each run says which file labelled it, and a set with many
unlabelled runs says so loudly, with the folders looked in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backtest.fixtures import mini_v2, write
from tether.backtest.importers import load_runs
from tether.backtest.labels import LabelError, LabelFinder, label_report, read_labels_file

IDS = ["django__django-1", "django__django-2", "sympy__sympy-3", "astropy__astropy-4"]


def harness_layout(root: Path, run_id: str = "mini2-run") -> Path:
    """mini-swe-agent 2.x output and the harness's report as their tools write them."""
    for instance in IDS:
        write(root / "output" / run_id / instance / f"{instance}.traj.json",
              mini_v2([[("ls", 0, "a.py")], [("python -m pytest", 1, "1 failed")]], costs=[0.1, 0.2],
                      instance=instance), gz=False)
    (root / "output" / run_id / "preds.json").write_text(json.dumps(
        {instance: {"model_patch": "diff", "instance_id": instance} for instance in IDS}))
    (root / f"openrouter__qwen3-coder.{run_id}.json").write_text(json.dumps({
        "total_instances": 500, "submitted_instances": 4, "completed_instances": 4, "resolved_instances": 2,
        "unresolved_instances": 1, "empty_patch_instances": 0, "error_instances": 1,
        "completed_ids": IDS[:3], "resolved_ids": IDS[:2], "unresolved_ids": [IDS[2]], "error_ids": [IDS[3]],
        "empty_patch_ids": [], "submitted_ids": IDS, "incomplete_ids": [], "schema_version": 2}))
    return root


def labels_of(paths: list[Path], **kwargs) -> dict[str, tuple[bool | None, str | None]]:
    return {run.instance_id: (run.resolved, run.label_source) for run in load_runs(paths, **kwargs)}


def test_the_harness_report_beside_the_output_folder_labels_its_runs(tmp_path: Path):
    root = harness_layout(tmp_path / "eval")
    labels = labels_of([root / "output"])
    report = str(root / "openrouter__qwen3-coder.mini2-run.json")
    assert labels == {IDS[0]: (True, report), IDS[1]: (True, report), IDS[2]: (False, report),
                      IDS[3]: (None, None)}  # its evaluation errored: no outcome, not a failure


def test_a_report_of_another_run_in_the_same_place_does_not_label_this_one(tmp_path: Path):
    root = harness_layout(tmp_path / "eval")
    (root / "openrouter__qwen3-coder.aaa-older-run.json").write_text(json.dumps(
        {"resolved_ids": [], "unresolved_ids": IDS}))  # sorts first by name; is of another run
    labels = labels_of([root / "output"])
    assert labels[IDS[0]] == (True, str(root / "openrouter__qwen3-coder.mini2-run.json"))


def test_per_instance_reports_of_the_harness_label_runs(tmp_path: Path):
    root = tmp_path / "eval"
    for instance in IDS[:2]:
        write(root / "output" / "r1" / instance / f"{instance}.traj.json", mini_v2([[("ls", 0, "")]], [0.1],
                                                                                      instance=instance), gz=False)
    for instance, resolved in ((IDS[0], True), (IDS[1], False)):
        report = root / "logs" / "run_evaluation" / "r1" / "qwen" / instance / "report.json"
        report.parent.mkdir(parents=True)
        report.write_text(json.dumps({instance: {"patch_exists": True, "resolved": resolved}}))
    labels = labels_of([root / "output"])
    assert [labels[i][0] for i in IDS[:2]] == [True, False]
    assert labels[IDS[0]][1].endswith("logs/run_evaluation/r1/")


def test_an_sb_cli_report_labels_runs(tmp_path: Path):
    root = tmp_path / "set"
    write(root / "trajs" / IDS[0] / f"{IDS[0]}.traj.json", mini_v2([[("ls", 0, "")]], [0.1], instance=IDS[0]),
          gz=False)
    (root / "sb-cli-reports").mkdir()
    (root / "sb-cli-reports" / "swe-bench_verified__test__run9.json").write_text(json.dumps(
        {"report": {"resolved_ids": [IDS[0]], "unresolved_ids": []}}))
    assert labels_of([root])[IDS[0]][0] is True


@pytest.mark.parametrize("name, text", [
    ("labels.csv", "instance_id,resolved\ndjango__django-1,true\ndjango__django-2,False\nsympy__sympy-3,0\n"),
    ("labels.json", json.dumps({IDS[0]: True, IDS[1]: False, IDS[2]: "unresolved"})),
    ("labels.json", json.dumps([{"instance_id": IDS[0], "resolved": True}, {"instance_id": IDS[1], "resolved": False},
                                {"instance_id": IDS[2], "resolved": False}])),
    ("report.json", json.dumps({"resolved_ids": [IDS[0]], "unresolved_ids": IDS[1:3]})),
])
def test_a_users_labels_file_comes_first(tmp_path: Path, name: str, text: str):
    root = harness_layout(tmp_path / "eval")
    given = tmp_path / name
    given.write_text(text)
    labels = labels_of([root / "output"], labels=read_labels_file(given))
    assert [labels[i] for i in IDS[:3]] == [(True, str(given)), (False, str(given)), (False, str(given))]
    assert labels[IDS[3]] == (None, None)


@pytest.mark.parametrize("text, says", [
    ("instance_id,outcome\na,true\n", "no 'resolved' column"),
    ("instance_id,resolved\na,maybe\n", "labels.csv:2: 'maybe' is not a label"),
    ("instance_id,resolved\n,true\n", "labels.csv:2: the row names no run"),
])
def test_a_bad_labels_file_names_the_file_and_row(tmp_path: Path, text: str, says: str):
    given = tmp_path / "labels.csv"
    given.write_text(text)
    with pytest.raises(LabelError, match=says):
        read_labels_file(given)
    with pytest.raises(LabelError, match="no such labels file"):
        read_labels_file(tmp_path / "missing.csv")


def test_many_unlabelled_runs_are_reported_loudly_with_where_labels_were_looked_for(tmp_path: Path):
    root = tmp_path / "nolabels"
    for number in range(5):
        instance = f"repo__repo-{number}"
        write(root / "output" / "r" / instance / f"{instance}.traj.json", mini_v2([[("ls", 0, "")]], [0.1],
                                                                                     instance=instance), gz=False)
    finder = LabelFinder()
    runs = list(load_runs([root], finder=finder))
    report = label_report([run.label_source for run in runs], finder)
    assert report.loud and report.unlabelled == 5 and str(root) in report.looked_in
    done = subprocess.run([sys.executable, "-m", "tether", "backtest", str(root), "--sweep"], capture_output=True,
                          text=True)
    assert "5 of 5 runs have no outcome label" in " ".join(done.stderr.split())
    assert "--labels FILE" in done.stderr


def test_the_backtest_cli_reads_the_harness_layout_and_says_which_file_labelled_each_run(tmp_path: Path):
    root = harness_layout(tmp_path / "eval")
    policy = tmp_path / "p.toml"
    policy.write_text("[budget]\nmax_steps = 1\n")
    done = subprocess.run([sys.executable, "-m", "tether", "backtest", str(root / "output"), "--policy", str(policy),
                           "--json"], capture_output=True, text=True)
    result = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert result["summary"]["unlabelled"] == 1 and result["summary"]["resolved"] == 2
    assert {run["label_source"] for run in result["runs"]} == {str(root / "openrouter__qwen3-coder.mini2-run.json"),
                                                              None}
    assert result["labels"]["sources"] == {str(root / "openrouter__qwen3-coder.mini2-run.json"): 3}
