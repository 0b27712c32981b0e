"""The report file: everything inline (no link to fetch), and data that cannot break out of
the <script> element that holds it."""

from __future__ import annotations

import json
import re

from tests.dashboard.seeding import PROBE
from tunewire.dashboard.follow import FollowedStudy
from tunewire.dashboard.payloads import study_payload
from tunewire.dashboard.report import render_report, script_json
from tunewire.v1 import study_pb2 as pb
from tunewire.v1 import tuning_service_pb2 as api


def probe_report() -> str:
    """A report of a study and a parameter named like markup (the API refuses such names,
    so the data is made here)."""
    spec = pb.StudySpec(
        parameters=[pb.ParameterSpec(name=PROBE, categorical=pb.Categorical(values=[PROBE, "b"]))],
        metrics=[pb.MetricSpec(name="loss", goal=pb.GOAL_MINIMIZE)],
    )
    trials = []
    for i in range(1, 7):
        t = pb.Trial(id=i, state=pb.TRIAL_STATE_COMPLETED, worker_id=PROBE, reason=PROBE)
        t.parameters[PROBE].string_value = PROBE if i % 2 else "b"
        t.final_measurement.metrics["loss"] = float(i)
        t.start_time.FromSeconds(1_700_000_000 + i)
        t.end_time.FromSeconds(1_700_000_010 + i)
        trials.append(t)
    curves = [
        pb.TrialCurve(trial_id=i, metric="loss", steps=[0, 1], values=[9.0, float(i)])
        for i in range(1, 7)
    ]
    study = FollowedStudy(PROBE)
    answer = api.ListStudyChangesResponse(
        study=pb.Study(name=PROBE, spec=spec, state=pb.STUDY_STATE_ACTIVE),
        trials=trials,
        curves=curves,
    )
    study.apply(answer)
    study.loaded = True
    study.compute_importance()
    return render_report(study_payload(study))


def test_script_json_cannot_end_its_script_element() -> None:
    text = script_json({"a": "</script><script>alert(1)</script>", "b": "&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><script>alert(1)</script>", "b": "&"}


def test_a_report_holds_every_script_and_its_data_inline() -> None:
    html = probe_report()
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)
    assert sorted(re.findall(r"""(?:src|href)=["']([^"']*)""", markup)) == ["#/", "data:,"]
    assert html.count("<script") == 6  # the data, plotly.js and the page's four scripts
    assert "&lt;img src=x onerror=alert(1)&gt;" in html.split("</title>")[0]
    data = re.search(r'<script type="application/json" id="tw-report">(.*?)</script>', html, re.S)
    assert data is not None and json.loads(data.group(1))["study"]["name"] == PROBE
