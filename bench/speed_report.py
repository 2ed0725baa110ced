"""The speed benchmark's report: bench/results/speed.md and its plots, from the figures of bench/speed.py.

    .venv/bin/python bench/speed.py --report-only       (rewrites them from var/bench/speed.json)

Percentiles are numpy's (linear interpolation): with 50 photos, p99 is close to the slowest.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from machine import cpu_model  # noqa: E402  bench/machine.py: scripts run from bench/

ROOT = Path(__file__).resolve().parents[1]
BANDS = ("0.25-1 MP", "1-2.5 MP", "2.5-4 MP")
# issue 13's targets: (what, limit, how the figure compares)
TARGETS = {
    "one p50": "one at a time: p50 at most 0.7 x rembg remove() warm",
    "one p99": "one at a time: p99 at most 1.0 x rembg remove() warm",
    "batch": "50 photos as one batch: wall time at most 0.67 x rembg p",
    "jobs": "50 photos as 50 separate jobs: wall time at most 0.67 x rembg p",
    "overhead p50": "platform overhead (end to end minus model compute): p50 at most 100 ms",
    "overhead p99": "platform overhead: p99 at most 250 ms",
    "enhance x2": "enhance x2 of 1 MP: end to end at most 1.15 x the models called directly",
    "restore": "restore of 1 MP: end to end at most 1.15 x the models called directly",
    "tracing": "tracing on costs at most 5 % of throughput",
}


def pct(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def serving_precision() -> str:
    config = ROOT / "var" / "model-repository" / "u2netp" / "config.pbtxt"
    text = config.read_text() if config.exists() else ""
    found = re.search(r'key: "precision" value \{ string_value: "(\w+)"', text)
    return found.group(1) if found else "unknown"


def verdicts(r: dict) -> list[tuple[str, str, bool | None]]:
    """(target, figure, met; None when not measured) for each of TARGETS."""
    one = r["one"]
    ours_s, rembg_s = [x["ours_s"] for x in one], [x["rembg_s"] for x in one]
    overhead = [(x["ours_s"] - x["model_s"]) * 1000 for x in one]
    rembg_p = float(np.mean(r["all"]["rembg_p_s"]))
    p50, p99 = pct(ours_s, 50) / pct(rembg_s, 50), pct(ours_s, 99) / pct(rembg_s, 99)
    rows = [
        ("one p50", f"{p50:.2f} x", p50 <= 0.7), ("one p99", f"{p99:.2f} x", p99 <= 1.0),
        ("batch", f"{r['all']['batch_s'] / rembg_p:.2f} x", r["all"]["batch_s"] / rembg_p <= 0.67),
        ("jobs", f"{r['all']['jobs_s'] / rembg_p:.2f} x", r["all"]["jobs_s"] / rembg_p <= 0.67),
        ("overhead p50", f"{pct(overhead, 50):.0f} ms", pct(overhead, 50) <= 100),
        ("overhead p99", f"{pct(overhead, 99):.0f} ms", pct(overhead, 99) <= 250),
    ]
    for name, m in r["multi"].items():
        rows.append((name, f"{m['ours_s'] / m['seconds']:.2f} x", m["ours_s"] / m["seconds"] <= 1.15))
    if "cold" in r:
        cost = 1 - r["cold"]["throughput_on"] / r["cold"]["throughput_off"]
        rows.append(("tracing", f"{cost:+.1%} of throughput", cost <= 0.05))
    else:
        rows.append(("tracing", "not measured: `make bench COLD=1` restarts the platform for it", None))
    return [(TARGETS[key], figure, met) for key, figure, met in rows]


def _each_way(cold: dict) -> str:
    """How the tracing figures were taken: the throughput of each restart, off and on in turn."""
    off, on = cold.get("throughputs_off", []), cold.get("throughputs_on", [])
    if len(off) < 2:
        return "one run each way"
    turns = "; ".join(f"off {a:.2f}, on {b:.2f}" for a, b in zip(off, on, strict=False))
    return f"means of {len(off)} runs each way, in turn: {turns}"


def _one_table(one: list[dict]) -> list[str]:
    lines = ["| photos | n | ours p50 s | ours p99 s | rembg p50 s | rembg p99 s | p50 ours/rembg | "
             "p99 ours/rembg | mask IoU mean (min) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for band in ("all", *BANDS):
        rows = [x for x in one if band in ("all", x["band"])]
        if not rows:
            continue
        o, t, j = [x["ours_s"] for x in rows], [x["rembg_s"] for x in rows], [x["iou"] for x in rows]
        lines.append(f"| {band} | {len(rows)} | {pct(o, 50):.2f} | {pct(o, 99):.2f} | {pct(t, 50):.2f} | "
                     f"{pct(t, 99):.2f} | {pct(o, 50) / pct(t, 50):.2f} | {pct(o, 99) / pct(t, 99):.2f} | "
                     f"{np.mean(j):.3f} ({min(j):.3f}) |")
    return lines


def _ran(one: list[dict]) -> str:
    started = sum(x["stages_started"] for x in one)
    if started >= len(one):
        return f"Every job of ours ran its stage (workers started {started} stages for {len(one)} jobs)."
    return f"**Only {started} stages started for {len(one)} jobs: results were reused; the figures are not valid.**"


def _hops_table(found: dict, inner_min_ms: float = 2.0) -> list[str]:
    """The trace's whole time, then each service (slowest first) with its own code and the spans inside it
    whose p50 is at least ``inner_min_ms``, then the Kafka hops."""
    def p50(key: str) -> float:
        return pct([h[key] for h in found.values() if key in h], 50)

    keys = {k for hops in found.values() for k in hops}
    services = sorted((k for k in keys if ":" not in k and not k.startswith("kafka ") and k != "trace"), key=p50,
                      reverse=True)
    order = ["trace"]
    for service in services:
        inner = sorted((k for k in keys if k.startswith(f"{service}: ")), key=p50, reverse=True)
        order += [service, *[k for k in inner if k == f"{service}: own code" or p50(k) >= inner_min_ms]]
    order += sorted((k for k in keys if k.startswith("kafka ")), key=p50, reverse=True)
    lines = ["| hop | jobs with it | p50 ms | p99 ms |", "|---|---:|---:|---:|"]
    for key in order:
        values = [h[key] for h in found.values() if key in h]
        name = f"&nbsp;&nbsp;{key}" if ": " in key else f"**{key}**"
        lines.append(f"| {name} | {len(values)} | {pct(values, 50):.1f} | {pct(values, 99):.1f} |")
    left = len(keys) - len(order)
    return lines + ([f"\n{left} spans inside services with a p50 under {inner_min_ms:g} ms are left out."]
                    if left else [])


def _plots(r: dict, out: Path) -> list[str]:
    one = r["one"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter([x["megapixels"] for x in one], [x["ours_s"] for x in one], label="ours, end to end", s=14)
    ax.scatter([x["megapixels"] for x in one], [x["rembg_s"] for x in one], label="rembg remove(), warm", s=14)
    ax.scatter([x["megapixels"] for x in one], [x["model_s"] for x in one], label="ours, model compute (Triton)",
               s=10, marker="x")
    ax.set(xlabel="photo, megapixels", ylabel="seconds", title="Remove background, one photo at a time")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "speed_one_at_a_time.png", dpi=100)
    plt.close(fig)

    a = r["all"]
    fig, ax = plt.subplots(figsize=(7, 3))
    labels = ["ours, separate jobs", "ours, one batch", *[f"rembg p, run {n + 1}" for n in range(len(a["rembg_p_s"]))]]
    ax.barh(labels, [a["jobs_s"], a["batch_s"], *a["rembg_p_s"]], color=["C0", "C0", *["C1"] * len(a["rembg_p_s"])])
    ax.set(xlabel="wall seconds", title=f"{a['photos']} photos at once")
    fig.tight_layout()
    fig.savefig(out / "speed_all_at_once.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist([(x["ours_s"] - x["model_s"]) * 1000 for x in one], bins=20)
    ax.set(xlabel="ms", ylabel="jobs", title="Platform overhead per job (end to end minus model compute)")
    fig.tight_layout()
    fig.savefig(out / "speed_overhead.png", dpi=100)
    plt.close(fig)
    return ["speed_one_at_a_time.png", "speed_all_at_once.png", "speed_overhead.png"]


def write(r: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    one, a, info = r["one"], r["all"], r["rembg"]
    rembg_p = float(np.mean(a["rembg_p_s"]))
    when = datetime.fromtimestamp(r["started"], UTC)
    lines = [
        "# Speed: remove-background against rembg on the same machine", "",
        f"Produced by `make bench` (bench/speed.py) on {when:%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
        f"{os.cpu_count()} cores, CPU only, in {r['seconds'] / 60:.1f} min; load average (1 min) "
        f"{r['load'][0]:.1f} at the start, {r['load'][-1]:.1f} at the end. {len(one)} real photos "
        "(bench/photos.py: scikit-image photos cropped, scaled, flipped and JPEG-encoded; distinct bytes; "
        "0.25-4 MP), each side's turns interleaved, in one run. U²-Net-p on both sides: ours serves the "
        f"**{serving_precision()}** model derived from the registry's weights (models/quantize.py) on Triton; "
        f"rembg {info['rembg']} (onnxruntime {info['onnxruntime']}, {', '.join(info['providers'])}) runs the "
        "registry's **fp32** weights, the file rembg itself downloads (same MD5), placed in its U2NET_HOME. "
        "Ours: upload to the gateway, `completed` event on the tenant's WebSocket feed, result downloaded. "
        "Theirs: `remove()` on the photo's bytes with a warm session, PNG bytes out. Every phase runs "
        "under a new tenant, so no result is reused.", "",
        "## Targets (issue 13)", "", "| target | this run | met |", "|---|---|---|",
        *[f"| {t} | {f} | {'n/a' if m is None else 'yes' if m else '**no**'} |" for t, f, m in verdicts(r)], "",
        "## One photo at a time", "", *_one_table(one), "",
        "Masks compared where alpha > 0.5; ours refine the mask's edges with a guided filter. " + _ran(one),
        "", "![one at a time](speed_one_at_a_time.png)", "",
        f"## {a['photos']} photos at once", "",
        "| how | wall s | photos/s | ours/rembg p |", "|---|---:|---:|---:|",
        f"| ours, {a['photos']} separate jobs submitted together | {a['jobs_s']:.1f} | "
        f"{a['photos'] / a['jobs_s']:.2f} | {a['jobs_s'] / rembg_p:.2f} |",
        f"| ours, one batch (`POST /v1/batches`) | {a['batch_s']:.1f} | {a['photos'] / a['batch_s']:.2f} | "
        f"{a['batch_s'] / rembg_p:.2f} |",
        *[f"| `rembg p -m u2netp` over the folder, run {n + 1} | {s:.1f} | {a['photos'] / s:.2f} | |"
          for n, s in enumerate(a["rembg_p_s"])], "",
        "Ours: from the first upload to the last result downloaded. rembg p: the whole process (it makes its "
        f"session first, as for anyone who runs it; over an empty folder it takes {a['rembg_p_empty_s']:.1f} s); "
        "ratios against the mean of its runs.", "",
        "![all at once](speed_all_at_once.png)", "",
        "## Platform overhead", "",
    ]
    overhead = [(x["ours_s"] - x["model_s"]) * 1000 for x in one]
    model = [x["model_s"] * 1000 for x in one]
    lines += [f"End to end minus the model's compute in Triton (compute_input + compute_infer + compute_output of "
              f"u2netp on both instances, read before and after each job): p50 {pct(overhead, 50):.0f} ms, p99 "
              f"{pct(overhead, 99):.0f} ms; the model's compute itself p50 {pct(model, 50):.0f} ms, p99 "
              f"{pct(model, 99):.0f} ms; its share of the end-to-end time "
              f"{sum(model) / sum(x['ours_s'] * 1000 for x in one):.0%}.", ""]
    t = r["traces"]
    if "error" in t:
        lines += [f"By hop: {t['error']}.", ""]
    elif not t["hops"]:
        lines += [f"By hop: no traces: Jaeger has none of the {len(one)} jobs' traces.", ""]
    else:
        lines += [f"By hop, from each job's trace in Jaeger ({len(t['hops'])} of {len(one)} jobs' traces found"
                  f"{'; none for ' + ', '.join(t['missing']) if t['missing'] else ''}). `trace`: the first span's "
                  "start to the last one's end (the upload's arrival to the `completed` event sent); a service's "
                  "row: its outermost spans, summed over the job; indented: inside them, `own code` being the "
                  "part outside any child span (for gpu-inference: decoding, mask, encoding); `kafka <topic>`: "
                  "publish to the consumer's span, the job's slowest message on the topic. Hops overlap where "
                  "services work at once (events go to the notifier while the worker runs).",
                  "", *_hops_table(t["hops"]), ""]
        inside = [h["trace"] - h.get("gpu-inference: triton u2netp", 0) for h in t["hops"].values()]
        lines += [f"Seen from the traces (the client's upload and download left out): the trace minus the "
                  f"gpu-inference's Triton call, p50 {pct(inside, 50):.0f} ms, p99 {pct(inside, 99):.0f} ms.", ""]
    lines += ["![overhead](speed_overhead.png)", "", "## The first job after its model was unloaded", "",
              f"u2netp unloaded from both Triton instances (`POST /v2/repository/models/u2netp/unload`), "
              f"gpu-inference's residency state saw it go {r['unload']['reconciled_s']:.0f} s later (its sweep); "
              f"the next 1 MP job took {r['unload']['first_s']:.2f} s end to end, against "
              f"{r['unload']['warm_s']:.2f} s for a 1 MP job just before.", "",
              "## Enhance x2 and restore of a 1 MP photo", "",
              "| operation | ours end to end s | models directly, one process s | of which in the models s | "
              "ours/direct | runs, ours/direct s | stages (ours; direct) |", "|---|---:|---:|---:|---:|---|---|"]
    for name, m in r["multi"].items():
        runs = ", ".join(f"{run['ours_s']:.2f}/{run['seconds']:.2f}" for run in m.get("runs", []))
        lines.append(f"| {name} | {m['ours_s']:.2f} | {m['seconds']:.2f} | {m['models_seconds']:.2f} | "
                     f"{m['ours_s'] / m['seconds']:.2f} | {runs or '-'} | "
                     f"{', '.join(m['ours_stages'])}; {', '.join(m['stages'])} |")
    lines += ["", "Medians of the photos' runs (the same 1 MP scene in distinct bytes, run by us, then directly, in "
              "turn); each run as ours/direct seconds. Directly: bench/direct.py in the Triton model environment "
              "builds each stage's model as Triton's python backend does and runs the operation's recipe on the "
              "decoded photo, PNG out (models loaded before the clock starts; both sides warmed on a 0.25 MP photo "
              "first). Directly, each model takes the whole image; the platform sends waifu2x its tiles "
              "(`photocraft.tile`), several at once.", "", "## Cold start and tracing", ""]
    if "cold" in r:
        c = r["cold"]
        lines += [f"`make up` took {c['up_s_on']:.0f} s; from its return to the first completed job (1 MP): "
                  f"{c['first_job_s_on']:.1f} s (tracing off: `make up` {c['up_s_off']:.0f} s, first job "
                  f"{c['first_job_s_off']:.1f} s). Throughput of {a['photos']} separate jobs after each restart: "
                  f"{c['throughput_off']:.2f} photos/s with `PHOTOCRAFT_TRACING__ENABLED=false`, "
                  f"{c['throughput_on']:.2f} with tracing on ({_each_way(c)}; each the second pass of the "
                  "photos after its restart, the first warming the platform up).", ""]
    else:
        lines += ["Not measured in this run: `make bench COLD=1` restarts the platform (tracing off, then on).", ""]
    _plots(r, out)
    (out / "speed.md").write_text("\n".join(lines))
    print(f"report written to {out / 'speed.md'}")
