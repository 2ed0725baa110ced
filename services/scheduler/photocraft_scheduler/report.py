"""A completed job's report (photocraft_common.report.JobReport), as pure functions (no I/O).

The report passes its analysis on whole (whatever keys the analyzer gives, docs/models.md; less its warnings) and adds:
what the analysis found (``findings``: defects, print tone and fading, noise, JPEG blocking, faces, each only
when measured), and for each stage of the recipe whether it ran (on which model, with which parameters, with
its model's INFO) or was skipped, and why. Why a stage was skipped or ran: the ``reason`` its analysis gives
for it (``stages.<name>.reason``), else what its analysis decided, in the words of ``SKIPPED`` and ``RAN``.
The endings (endings.py) store it beside the job's results.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from photocraft_common.contracts import TaskOutput
from photocraft_common.jobs import JobRecord
from photocraft_common.operations import Stage
from photocraft_common.report import JobReport, NotInstalled, StageReport

from .notices import fallback_warning, missing_warning
from .outcomes import unchanged
from .plan import Plan, decision
from .stages import State

# Why a stage its analysis named ran or was skipped, when the analysis does not say.
RAN = {"descratch": "the analysis found scratches, dust or tears", "denoise": "the analysis measured grain or noise",
       "dejpeg": "the analysis found JPEG blocking", "faces": "the analysis found faces",
       "balance": "the analysis found fading, a colour cast, toning or flat levels to correct",
       "colorize": "the analysis found a black-and-white or toned print"}
SKIPPED = {"descratch": "the analysis found no scratches, dust or tears",
           "denoise": "the analysis found too little noise to remove", "dejpeg": "the analysis found no JPEG blocking",
           "faces": "the analysis found no faces",
           "balance": "the analysis found no fading, colour cast or toning to correct",
           "colorize": "the analysis found a colour photo"}
DEFECTS = {"scratches": ("scratch", "scratches"), "dust": ("dust speck", "dust specks"),
           "tears": ("tear or missing area", "tears or missing areas")}


def analyzers(plan: Plan) -> list[str]:
    """The stages of ``plan`` that decide others (its analyses), in recipe order."""
    deciding = {s.decided_by for s in plan.stages if s.decided_by}
    return [s.name for s in plan.stages if s.name in deciding]


def info_of(output: TaskOutput | None) -> dict:
    """A stage's INFO (its ``info_json``) without its warnings, which the report lists apart; {} if none."""
    info = json.loads(output.info_json or "{}") if output is not None else {}
    return {k: v for k, v in info.items() if k != "warnings"} if isinstance(info, dict) else {}


def findings(analysis: Mapping) -> list[str]:
    """What ``analysis`` found, in words: one line per measurement it has (the agreed keys "defects", "print",
    "noise_sigma", "blockiness", "faces"; "grayscale" and "scratches" of the older analysis); [] for none."""
    lines = []
    if isinstance(defects := analysis.get("defects"), Mapping):
        found = [f"{n} {DEFECTS.get(kind, (kind, kind))[n != 1]} ({found.get('pixels', 0)} px)"
                 for kind, found in defects.items() if isinstance(found, Mapping) and (n := found.get("count", 0))]
        lines.append("defects: " + ", ".join(found) if found else "no scratches, dust or tears found")
    elif "scratches" in analysis:
        lines.append(f"scratches on {100 * analysis['scratches']:.2f} % of the photo")
    if isinstance(paper := analysis.get("print"), Mapping):
        lines.append(_print(paper))
    elif "grayscale" in analysis:
        lines.append("a black-and-white photo" if analysis["grayscale"] else "a colour photo")
    if "noise_sigma" in analysis:
        lines.append(f"noise: sigma {analysis['noise_sigma']:.1f} gray levels (0-255)")
    if "blockiness" in analysis:
        lines.append(f"JPEG blocking: {analysis['blockiness']:.2f} (about 0 without it; over 0.3 is visible)")
    if "faces" in analysis:
        n = analysis["faces"]
        lines.append(f"{n} face{'s' if n != 1 else ''} found" if n else "no faces found")
    return lines


def _print(paper: Mapping) -> str:
    toned = paper.get("toned", "none")
    if paper.get("monochrome"):
        kind = "a black-and-white photo" if toned == "none" else (
            "a toned monochrome print" if toned == "other" else f"a {toned}-toned monochrome print")
    else:
        kind = "a colour photo"
    if paper.get("faded"):
        kind += ", faded"
    cast = paper.get("cast")
    if isinstance(cast, list | tuple) and len(cast) == 2 and max(abs(c) for c in cast) >= 1:
        kind += f"; colour cast a* {cast[0]:+.1f}, b* {cast[1]:+.1f} (CIELAB)"
    return kind


def skipped_words(analysis: Mapping, toning: str) -> dict[str, str]:
    """Why each stage its analysis did not need was skipped: ``SKIPPED``, with colorize and balance told by the
    analysis (its "print", else its "grayscale") and the job's ``toning``."""
    paper = analysis.get("print")
    paper = paper if isinstance(paper, Mapping) else {}
    monochrome = paper.get("monochrome", analysis.get("grayscale"))
    words = dict(SKIPPED)
    if monochrome and toning == "keep":
        words["colorize"] = "the print's tone is kept (toning: keep), so it is not colorized"
    elif monochrome is not False:
        words["colorize"] = "the analysis did not ask for it"
    if paper.get("toned", "none") != "none" and toning == "keep":
        words["balance"] = "the print's tone is kept (toning: keep); the analysis found no fading or cast to correct"
    return words


def _reason(stage: Stage, ran: bool, analysis_stages: Mapping, skipped: Mapping[str, str]) -> str:
    """Why ``stage`` ran (``ran``) or was skipped (``skipped``: the words for each stage)."""
    if not stage.decided_by:
        return "its recipe always runs it"
    verdict = analysis_stages.get(stage.name)
    if not isinstance(verdict, Mapping):  # a stage its analysis does not name runs
        return "the analysis does not decide it, so it runs"
    if verdict.get("reason"):
        return str(verdict["reason"])
    return (RAN if ran else skipped).get(stage.name, f"the analysis {'asked for' if ran else 'did not need'} it")


def stage_report(stage: Stage, state: str, outputs: Mapping[str, TaskOutput], analysis_stages: Mapping,
                 is_analyzer: bool, changed: bool, skipped: Mapping[str, str] = SKIPPED,
                 ) -> tuple[StageReport, NotInstalled | None]:
    """One stage's line of the report (``changed``: whether it changed the photo, if it ran; ``skipped``: why
    each stage its analysis did not need was skipped), and what it lacked when its preferred model is not
    installed."""
    output = outputs.get(stage.name)
    try:
        wanted, added = decision(stage, outputs)
    except KeyError:  # its analysis has no output: the job did not get that far
        wanted, added = False, {}
    warnings = list(output.warnings) if output is not None else []
    if state != State.DONE or output is None:
        status = "skipped" if state == State.SKIPPED else "not-run"
        if state == State.SKIPPED and wanted:  # skipped for want of its models
            effect = next(iter(warnings), missing_warning(stage))
            return (StageReport(stage=stage.name, status=status, reason=effect, warnings=warnings),
                    NotInstalled(stage=stage.name, model=stage.models[0], effect=effect))
        reason = _reason(stage, False, analysis_stages, skipped) if status == "skipped" else "the job ended before it"
        return StageReport(stage=stage.name, status=status, reason=reason, warnings=warnings), None
    model = output.model
    if is_analyzer:
        reason = "measures the photo; the stages after it follow what it found (the report's analysis)"
    else:
        reason = _reason(stage, True, analysis_stages, skipped)
    if not changed and not is_analyzer:
        reason += "; it left the photo as it was"
    missing = None
    if fallback := fallback_warning(stage, model):
        reason += f"; {fallback}"
        missing = NotInstalled(stage=stage.name, model=stage.models[0], instead=model, effect=fallback)
    return StageReport(stage=stage.name, status="reused" if output.reused else "ran", model=model,
                       params={**stage.params, **added}, reason=reason,
                       info={} if is_analyzer else info_of(output), changed=changed, warnings=warnings), missing


def _changed(plan: Plan, stage: Stage, states: Mapping[str, str], outputs: Mapping[str, TaskOutput]) -> bool:
    """Whether a done ``stage`` changed the photo (outcomes.unchanged); False for any other."""
    if states.get(stage.name) != State.DONE:
        return False
    try:
        return not unchanged(plan, stage, outputs)
    except (KeyError, StopIteration):  # an output without an image, or a missing one: not a change we can show
        return False


def job_report(record: JobRecord, plan: Plan, states: Mapping[str, str], outputs: Mapping[str, TaskOutput],
               warnings: list[str]) -> JobReport:
    """The report of ``record``'s job once its stages have ended: ``states`` and ``outputs`` are its stages'
    (stages.StageStore), ``warnings`` the job's (plan.Complete)."""
    deciding = analyzers(plan)
    analysis = info_of(outputs.get(deciding[0])) if deciding and deciding[0] in outputs else None
    analysis_stages = analysis.get("stages", {}) if analysis else {}
    skipped = skipped_words(analysis or {}, getattr(plan.params, "toning", ""))
    lines = [stage_report(s, states.get(s.name, ""), outputs, analysis_stages, s.name in deciding,
                          _changed(plan, s, states, outputs), skipped) for s in plan.stages]
    return JobReport(job_id=record.job_id, operation=record.operation,
                     params=plan.params.model_dump(exclude={"operation"}), analysis=analysis,
                     findings=findings(analysis) if analysis else [], stages=[line for line, _ in lines],
                     not_installed=[missing for _, missing in lines if missing], warnings=warnings)
