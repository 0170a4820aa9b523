"""The evaluation job's output files: ``metrics.json`` (the whole report) and ``metrics.md`` (one table per evaluator).

In: the report dict of ``raystx.evaljob.run.run_evaluation`` and an output folder. Out: the two file paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a title line, then per evaluator a ``| metric | value |`` table (primary in bold)."""
    lines = [
        f"# Evaluation of `{report['model']}`",
        "",
        f"{report['num_workers']} worker(s), {report['eval_seconds']} s of evaluation.",
    ]
    for entry in report["evaluators"]:
        title = entry["type"] + (f" `{entry['name']}`" if entry.get("name") else "")
        lines += ["", f"## {title}", "", "| metric | value |", "|---|---|"]
        primary = entry.get("primary_metric")
        for key, value in entry["metrics"].items():
            shown = f"{value:.6f}" if isinstance(value, float) else str(value)
            lines.append(f"| **{key}** | **{shown}** |" if key == primary else f"| {key} | {shown} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], output_dir: str) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.md`` into ``output_dir`` (created if needed)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "metrics.json", out / "metrics.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path
