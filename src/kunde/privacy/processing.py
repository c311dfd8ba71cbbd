"""The record of processing activities (GDPR Art. 30), generated from configuration.

`processing.yaml` describes each activity; this module keeps the activities of the
features installed in this build and fills in the retention periods in force.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kunde.features import Feature
from kunde.privacy.retention import policies
from kunde.settings import Settings

SOURCE = Path(__file__).parent / "processing.yaml"


def processing_record(features: Sequence[Feature], settings: Settings | None = None
                      ) -> dict[str, Any]:
    config = yaml.safe_load(SOURCE.read_text())
    installed = {f.name for f in features}
    periods = {p.data_class: p for p in policies(settings)}
    activities = []
    for a in config["activities"]:
        if a["feature"] not in installed:
            continue
        policy = periods.get(a.get("retention_class") or "")
        a["retention"] = (f"{policy.days} days ({policy.legal_basis})" if policy
                          else "while the customer relationship lasts; erased on request")
        activities.append(a)
    return {"controller": config["controller"], "activities": activities,
            "security_measures": config["security_measures"]}


def as_markdown(record: dict[str, Any]) -> str:
    lines = ["# Record of processing activities (Art. 30 GDPR)", "",
             f"Controller: {record['controller']}", ""]
    for a in record["activities"]:
        lines += [f"## {a['name']}", "",
                  f"- Purposes: {', '.join(a['purposes'])}",
                  f"- Legal basis: {a['legal_basis']}",
                  f"- Data subjects: {', '.join(a['data_subjects'])}",
                  f"- Data: {', '.join(a['data_categories'])}",
                  f"- Recipients: {', '.join(a['recipients'])}",
                  f"- Retention: {a['retention']}", ""]
    lines += ["## Technical and organisational measures", ""]
    lines += [f"- {m}" for m in record["security_measures"]]
    return "\n".join(lines) + "\n"
