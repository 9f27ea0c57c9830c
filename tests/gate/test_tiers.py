"""Permission tiers: a (repository, configuration) earns a tier on its measured SLA, loses it on a
breach, may be pinned by a person; real runs are held to their tier's limits and record it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import insert

from tests.conftest import CHECK, FIX, call, git, payloads, script
from tests.gate.history import CONFIG, REPO, at_once, history
from tests.queue.helpers import tether
from tether.delivery.deliver import deliver
from tether.delivery.remotes import DeliveryError
from tether.gate.ladder import GateError, configurations, evaluate, gate_log_id, pin, tier_state
from tether.gate.measure import breaches, measure_window
from tether.gate.outcomes import report_outcome
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.fleet import ORG_POLICY, Fleet
from tether.ledger.schema import eval_cells, evals
from tether.policy import PolicyError, parse_policy
from tether.policy.load import layer_policy, org_tiers
from tether.policy.schema import DeliveryPolicy, Sla
from tether.policy.tiers import TierRefusal, apply_tier
from tether.runner import RunError, RunSpec, start_run

LADDER = """
[[tiers]]
name = "observe"

[[tiers]]
name = "branch"
delivery = "branch"
[tiers.enter]
min_runs = 10
min_fix_rate = 0.5
max_p95_latency_s = 600

[[tiers]]
name = "pull_request"
delivery = "pull_request"
max_files = 5
[tiers.enter]
min_runs = 20
min_fix_rate = 0.7
max_escaped_defect_rate = 0.1
max_usd_per_fix = 1.0
"""


def tiers(text: str = LADDER):
    return org_tiers(text)


def decisions(ledger: Ledger, repo: str = REPO, configuration: str = CONFIG) -> list[ev.TierChanged]:
    return [e.data for e in ledger.events(gate_log_id(repo, configuration)) if isinstance(e.data, ev.TierChanged)]


# --- the ladder over a simulated history -----------------------------------------------------


def test_a_configuration_earns_pull_request_one_tier_at_a_time_then_loses_it_to_escaped_defects(ledger):
    ladder = tiers()
    assert tier_state(ledger, ladder, REPO, CONFIG).tier.name == "observe"  # no decision yet: the lowest
    fixes = history(ledger, ["fix"] * 27 + ["fail"] * 3)

    first = evaluate(ledger, ladder, REPO, CONFIG, by="ci")
    assert first.changed is not None and (first.changed.from_tier, first.changed.to_tier) == ("observe", "branch")
    assert first.state.tier.name == "branch"  # pull_request's SLA is met too, but one tier per decision
    second = evaluate(ledger, ladder, REPO, CONFIG, by="ci")
    assert second.changed is not None and second.changed.to_tier == "pull_request"
    assert second.changed.measures["runs"] == 30 and second.changed.measures["fixes"] == 27
    assert second.changed.measures["fix_rate_lower"] >= 0.7
    assert evaluate(ledger, ladder, REPO, CONFIG, by="ci").changed is None  # the top: nothing to do

    for run_id in fixes[:5]:  # a burst of escaped defects: 5 of 27 claimed fixes came back
        report_outcome(ledger, run_id, "reverted" if run_id < fixes[2] else "defect", by="oncall", reason="incident")
    third = evaluate(ledger, ladder, REPO, CONFIG, by="ci")
    assert third.changed is not None and third.changed.decision == "demote"
    assert (third.changed.from_tier, third.changed.to_tier) == ("pull_request", "branch")
    assert any(b.startswith("escaped-defect rate 0.185 above 0.1") for b in third.changed.breaches), \
        third.changed.breaches
    assert third.changed.measures["escaped_defect_rate"] == pytest.approx(5 / 27, abs=1e-4)

    # both decisions, with their evidence, in a hash-chained gate log that is not listed as a run
    log = decisions(ledger)
    assert [(d.decision, d.to_tier) for d in log] == [("promote", "branch"), ("promote", "pull_request"),
                                                       ("demote", "branch")]
    assert all(d.by == "ci" and d.measures for d in log)
    assert ledger.verify(gate_log_id(REPO, CONFIG)).ok
    assert all(not row.id.startswith("gate-") for row in ledger.list_runs(limit=None))


def test_a_tier_is_not_entered_on_too_few_runs_but_a_held_tier_is_not_lost_to_a_quiet_window(ledger):
    ladder = tiers()
    history(ledger, ["fix"] * 9)
    verdict = evaluate(ledger, ladder, REPO, CONFIG, by="ci")
    assert verdict.changed is None and verdict.judged == "enter branch"
    assert verdict.breaches == ["9 runs in 30 days, fewer than min_runs 10"]
    history(ledger, ["fix"])
    assert evaluate(ledger, ladder, REPO, CONFIG, by="ci").state.tier.name == "branch"
    later = time.time() + 40 * 86400  # every run has left the window
    assert measure_window(ledger, REPO, CONFIG, 30, now=later).runs == 0
    assert evaluate(ledger, ladder, REPO, CONFIG, by="ci", now=later).state.tier.name == "branch"


def test_the_fix_rate_is_judged_by_its_lower_bound_not_its_point_estimate(ledger):
    ladder = tiers(LADDER.replace("min_runs = 10\nmin_fix_rate = 0.5", "min_runs = 10\nmin_fix_rate = 0.7"))
    history(ledger, ["fix"] * 9 + ["fail"])  # 90%, but the interval reaches down to 0.60
    verdict = evaluate(ledger, ladder, REPO, CONFIG, by="ci")
    assert verdict.changed is None
    assert verdict.breaches == ["fix rate (95% lower bound) 0.596 below 0.7"]
    history(ledger, ["fix"] * 36 + ["fail"] * 4)  # 45/50: lower bound 0.79
    assert evaluate(ledger, ladder, REPO, CONFIG, by="ci").state.tier.name == "branch"


def test_latency_and_cost_per_fix_are_measured_from_the_runs(ledger):
    history(ledger, ["fix"] * 10, latency_s=900, usd=0.5)
    measures = measure_window(ledger, REPO, CONFIG, 30)
    assert measures.p95_latency_s == pytest.approx(900, abs=2) and measures.usd_per_fix == pytest.approx(0.5)
    verdict = evaluate(ledger, tiers(), REPO, CONFIG, by="ci")
    assert verdict.changed is None and verdict.breaches == ["p95 latency (s) 900 above 600"]
    sla = Sla(min_runs=1, max_usd_per_fix=0.4)
    assert breaches(sla, measures, entering=True) == ["cost per fix (USD) 0.5 above 0.4"]
    no_fix = measure_window(ledger, "/elsewhere", CONFIG, 30)
    assert breaches(sla, no_fix, entering=False) == []  # a held tier with no runs is kept


def test_only_this_configuration_in_this_repository_counts(ledger):
    history(ledger, ["fix"] * 10, configuration="harness openai:gpt-4o #ffffffff")
    history(ledger, ["fix"] * 10, repo="/srv/repos/other")
    history(ledger, ["fix"] * 10, source="replay")  # a replay re-runs a record; it is not new evidence
    assert measure_window(ledger, REPO, CONFIG, 30).runs == 0
    assert configurations(ledger, REPO) == sorted([CONFIG, "harness openai:gpt-4o #ffffffff"])


def test_work_that_never_left_the_machine_is_not_a_fix_when_the_policy_asked_for_a_push(ledger):
    history(ledger, ["fix"] * 6 + ["undelivered"] * 4, mode="push")
    measures = measure_window(ledger, REPO, CONFIG, 30)
    assert (measures.runs, measures.claimed, measures.fixes) == (10, 10, 6)


def test_an_eval_run_whose_hidden_tests_failed_is_a_false_success(ledger):
    runs = history(ledger, ["fix"] * 4, source="eval")
    with ledger.engine.begin() as conn:
        conn.execute(insert(evals).values(id="e1", created_at=time.time(), suite="s", spec="{}"))
        for index, run_id in enumerate(runs):
            score = '{"hidden": {"passed": %s}}' % ("false" if index == 0 else "true")
            conn.execute(insert(eval_cells).values(eval_id="e1", task=f"t{index}", config="c", repeat=0,
                                                   run_id=run_id, score=score))
    report_outcome(ledger, runs[1], "rejected", by="reviewer", reason="wrong approach")
    measures = measure_window(ledger, REPO, CONFIG, 30)
    assert (measures.fixes, measures.false_success_rate) == (2, 0.5)


# --- a person's pin ------------------------------------------------------------------------


def test_a_pin_holds_against_the_gate_until_unpinned_and_records_who_and_why(ledger):
    ladder = tiers()
    runs = history(ledger, ["fix"] * 30)
    change = pin(ledger, ladder, REPO, CONFIG, "pull_request", by="alice", reason="trial week, approved by CTO")
    assert (change.decision, change.to_tier, change.pinned, change.by) == ("pin", "pull_request", True, "alice")
    for run_id in runs[:10]:
        report_outcome(ledger, run_id, "defect", by="oncall")
    held = evaluate(ledger, ladder, REPO, CONFIG, by="ci")
    assert held.changed is None and held.judged == "pinned" and held.state.pinned
    assert held.state.pinned_by == "alice"
    unpinned = pin(ledger, ladder, REPO, CONFIG, None, by="alice", reason="trial over")
    assert (unpinned.decision, unpinned.to_tier, unpinned.pinned) == ("unpin", "pull_request", False)
    demoted = evaluate(ledger, ladder, REPO, CONFIG, by="ci")
    assert demoted.changed is not None and demoted.state.tier.name == "branch"


@pytest.mark.parametrize(("tier", "reason", "message"), [
    ("admin", "because", "no tier 'admin'; the ladder is observe -> branch -> pull_request"),
    ("branch", "  ", "a pin needs a reason"),
])
def test_a_bad_pin_is_refused_and_records_nothing(ledger, tier, reason, message):
    with pytest.raises(GateError, match=message):
        pin(ledger, tiers(), REPO, CONFIG, tier, by="alice", reason=reason)
    assert not ledger.has_run(gate_log_id(REPO, CONFIG))


# --- outcomes ------------------------------------------------------------------------------


def test_outcomes_are_reported_only_on_finished_runs_whose_claim_they_judge(ledger):
    fixed, failed = history(ledger, ["fix", "fail"])
    with pytest.raises(GateError, match="only a succeeded run's work can be reverted"):
        report_outcome(ledger, failed, "reverted", by="x")
    report_outcome(ledger, failed, "rejected", by="x")  # a failed run's draft may be closed unmerged
    ledger.create_run("running-1", repo=REPO, instruction="t", source="queue", status="running")
    with pytest.raises(GateError, match="is running"):
        report_outcome(ledger, "running-1", "merged", by="x")
    report_outcome(ledger, fixed, "merged", by="x")
    report_outcome(ledger, fixed, "reverted", by="x", reason="revert 9f1c2e")  # the latest report counts
    assert measure_window(ledger, REPO, CONFIG, 30).escaped_defect_rate == 1.0


# --- the policy side ----------------------------------------------------------------------


def test_tiers_belong_to_the_org_policy_and_a_ladder_must_be_well_formed(tmp_path):
    with pytest.raises(PolicyError, match="tiers: permission tiers belong to the org policy"):
        layer_policy(LADDER, '[[tiers]]\nname = "god"\ndelivery = "pull_request"\n', tmp_path / "tether.toml")
    with pytest.raises(PolicyError, match=r"tier\(s\) pr need an \[tiers.enter\] SLA"):
        parse_policy('[[tiers]]\nname = "a"\n[[tiers]]\nname = "pr"\n', Path("org.toml"))
    with pytest.raises(PolicyError, match="duplicate tier names: a"):
        parse_policy('[[tiers]]\nname = "a"\n[[tiers]]\nname = "a"\n[tiers.enter]\n', Path("org.toml"))
    with pytest.raises(PolicyError, match=r"tiers\[0\].enter.min_fix_rate"):
        parse_policy('[[tiers]]\nname = "a"\n[tiers.enter]\nmin_fix_rate = 1.5\n', Path("org.toml"))


def test_a_tier_only_ever_narrows_the_policy():
    policy = parse_policy('[delivery]\nmode = "push"\n[writes]\nmax_lines = 50\n[commands]\nnetwork = true\n'
                          'deny = ["curl"]\n', Path("tether.toml"))
    low, high = tiers()[0], tiers()[2]
    narrowed = apply_tier(policy, low, "harness")
    assert narrowed.delivery.mode == "branch" and not narrowed.commands.network
    widened = apply_tier(policy, high.model_copy(update={"network": True, "max_lines": 500,
                                                         "commands_deny": ["curl", "re:^ssh"]}), "harness")
    assert widened.delivery.mode == "push"  # the tier allows pull requests; the policy asked for a push
    assert widened.writes.max_lines == 50 and widened.writes.max_files == 5 and widened.commands.network
    assert widened.commands.deny == ["curl", "re:^ssh"] and not widened.delivery.draft
    assert apply_tier(policy, high.model_copy(update={"draft": True}), "harness").delivery.draft
    with pytest.raises(TierRefusal, match="allows the architectures harness, not 'agent:codex'"):
        apply_tier(policy, low.model_copy(update={"architectures": ["harness"]}), "agent:codex")


# --- real runs ----------------------------------------------------------------------------


def _org(ledger: Ledger, ladder: str) -> None:
    Fleet(ledger).set_setting(ORG_POLICY, ladder)


def _run(ledger: Ledger, repo: Path, turns_file: Path, turns: list, policy_text: str) -> dict:
    policy = parse_policy(policy_text, Path("tether.toml"))
    org = Fleet(ledger).org_policy()
    if org is not None:
        policy = layer_policy(org, policy_text, repo / "tether.toml")
    return start_run(ledger, RunSpec("Make the tests pass", repo, policy, model=script(turns_file, turns)))


def test_a_real_run_records_its_tier_and_is_held_to_its_limits(ledger, repo, tmp_path):
    _org(ledger, LADDER.replace('name = "observe"', 'name = "observe"\nmax_files = 1'))
    turns = [call("write_file", path="raindrops.py", content=FIX), call("write_file", path="notes.md", content="x\n"),
             call("submit", summary="done")]
    summary = _run(ledger, repo, tmp_path / "turns.json", turns, CHECK + '[delivery]\nmode = "push"\n')
    (started,) = payloads(ledger, summary["run_id"], "run_started")
    assert started["tier"] == "observe" and started["configuration"].startswith("harness scripted:")
    assert started["policy"]["delivery"]["mode"] == "branch"  # observe delivers no further than a branch
    assert started["policy"]["writes"]["max_files"] == 1
    assert any(d["rule"].startswith("writes.max_files") for d in summary["denials"]), summary["denials"]
    assert payloads(ledger, summary["run_id"], "delivered") == payloads(ledger, summary["run_id"],
                                                                        "delivery_failed") == []
    assert configurations(ledger, str(repo)) == [started["configuration"]]
    with pytest.raises(DeliveryError, match="ran at tier 'observe', which delivers no further than 'branch'"):
        deliver(ledger, summary["run_id"], DeliveryPolicy(mode="push", remote="https://git.example.com/a/b.git"))


def test_a_worker_demotes_a_breached_tier_before_the_next_run_starts(ledger, repo, tmp_path):
    _org(ledger, LADDER)
    turns_file = tmp_path / "turns.json"
    first = _run(ledger, repo, turns_file, [call("write_file", path="raindrops.py", content=FIX),
                                            call("submit", summary="done")], CHECK)
    configuration = payloads(ledger, first["run_id"], "run_started")[0]["configuration"]
    ladder = tiers()
    runs = history(ledger, ["fix"] * 29, repo=str(repo), configuration=configuration)
    pin(ledger, ladder, str(repo), configuration, "pull_request", by="alice", reason="earned elsewhere")
    pin(ledger, ladder, str(repo), configuration, None, by="alice", reason="let the gate judge")
    for run_id in runs[:6]:
        report_outcome(ledger, run_id, "defect", by="oncall")
    second = _run(ledger, repo, turns_file, [call("submit", summary="nothing")], CHECK)
    assert payloads(ledger, second["run_id"], "run_started")[0]["tier"] == "branch"
    last = decisions(ledger, str(repo), configuration)[-1]
    assert (last.decision, last.from_tier, last.to_tier) == ("demote", "pull_request", "branch")
    assert last.by.startswith("worker ")


def test_a_run_of_an_architecture_its_tier_does_not_allow_is_refused_before_anything_is_made(ledger, repo, tmp_path):
    _org(ledger, LADDER.replace('name = "observe"', 'name = "observe"\narchitectures = ["orchestrated"]'))
    with pytest.raises(RunError, match="tier 'observe' allows the architectures orchestrated, not 'harness'"):
        _run(ledger, repo, tmp_path / "turns.json", [call("submit", summary="x")], CHECK)
    assert ledger.list_runs(limit=None) == []
    assert git(repo, "branch", "--list", "tether/*") == ""


# --- the command line ----------------------------------------------------------------------


def test_gate_and_outcome_on_the_command_line(sqlite_url, repo):
    ledger = Ledger(sqlite_url)
    root = str(repo.resolve())
    runs = history(ledger, ["fix"] * 10, repo=root)
    ledger.close()
    store = ["--db", sqlite_url, "--repo", str(repo)]
    no_tiers = tether("gate", *store)
    assert no_tiers.returncode == 2 and "the org policy has no [[tiers]]" in no_tiers.stderr
    org = repo.parent / "org.toml"
    org.write_text(LADDER)
    assert tether("fleet", "set", str(org), *store).returncode == 0
    dry = tether("gate", "--dry-run", *store)
    assert dry.returncode == 0 and "observe" in dry.stdout and CONFIG in dry.stdout
    moved = tether("gate", *store)
    assert moved.returncode == 0 and "branch (promoted from observe)" in moved.stdout, moved.stdout
    bad = tether("outcome", runs[0], "broken", *store)
    assert bad.returncode == 2 and "outcome must be one of merged, rejected, reverted, defect" in bad.stderr
    reverted = tether("outcome", runs[0], "reverted", "--by", "oncall", "--reason", "revert abc", *store)
    assert reverted.returncode == 0 and "reported by oncall" in reverted.stdout
    no_reason = tether("gate", "-c", CONFIG, "--pin", "pull_request", *store)
    assert no_reason.returncode != 0 and "a pin needs a reason" in no_reason.stderr
    pinned = tether("gate", "-c", CONFIG, "--pin", "pull_request", "--reason", "trial", "--by", "alice", *store)
    assert pinned.returncode == 0 and "pin at pull_request by alice" in pinned.stdout
    ledger = Ledger(sqlite_url)
    assert tier_state(ledger, tiers(), root, CONFIG).pinned
    url = "https://git.example.com/acme/shop.git"
    history(ledger, ["fix"] * 10, repo=url, configuration="harness openai:gpt-4o #99999999")
    ledger.close()
    by_url = tether("gate", "--url", url, *store)
    assert by_url.returncode == 0 and "branch (promoted from observe)  harness openai:gpt-4o #99999999" in by_url.stdout
    assert CONFIG not in by_url.stdout  # the other repository's configuration
    bad_url = tether("gate", "--url", "https://u:p@git.example.com/a.git", *store)
    assert bad_url.returncode != 0 and "must not carry a password" in bad_url.stderr


def test_workers_judging_a_breach_at_once_demote_it_once(sqlite_url):
    ladder = tiers(LADDER.replace("min_fix_rate = 0.5", "min_fix_rate = 0.3"))
    ledger = Ledger(sqlite_url)
    runs = history(ledger, ["fix"] * 30)
    pin(ledger, ladder, REPO, CONFIG, "pull_request", by="alice", reason="trial")
    pin(ledger, ladder, REPO, CONFIG, None, by="alice", reason="judge it")
    for run_id in runs[:10]:  # pull_request's SLA breached; branch's still met
        report_outcome(ledger, run_id, "defect", by="oncall")
    at_once(sqlite_url, 4, lambda own, n: evaluate(own, ladder, REPO, CONFIG, by=f"worker {n}", promote=False))
    assert [(d.decision, d.to_tier) for d in decisions(ledger)] == [("pin", "pull_request"),
                                                                    ("unpin", "pull_request"), ("demote", "branch")]
    assert ledger.verify(gate_log_id(REPO, CONFIG)).ok
    ledger.close()
