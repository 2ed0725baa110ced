"""The speed benchmark's own logic (bench/photos.py, traces.py, speed.py, speed_report.py), without the platform."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the bench scripts import each other

import photos  # noqa: E402
import speed  # noqa: E402
import speed_report  # noqa: E402
import traces  # noqa: E402


def test_recipes_are_the_same_every_time_and_a_prefix_of_a_longer_corpus():
    assert photos.recipes(50) == photos.recipes(50)
    assert photos.recipes(7) == photos.recipes(50)[:7]


def test_every_photo_is_within_its_band_and_the_first_three_cover_every_band():
    made = photos.recipes(50)
    assert all(0.25 <= r.megapixels <= 4.0 for r in made)
    assert [photos.band_of(r.megapixels) for r in made[:3]] == ["0.25-1 MP", "1-2.5 MP", "2.5-4 MP"]
    assert len({r.name for r in made}) == 50


@pytest.mark.parametrize(("megapixels", "band"), [(0.25, "0.25-1 MP"), (1.0, "1-2.5 MP"), (2.49, "1-2.5 MP"),
                                                  (4.0, "2.5-4 MP")])
def test_band_of(megapixels, band):
    assert photos.band_of(megapixels) == band


def test_band_of_refuses_a_size_outside_the_corpus():
    with pytest.raises(ValueError, match="outside"):
        photos.band_of(4.5)


def test_corpus_files_are_distinct_jpegs_of_their_recipe_and_cached(tmp_path):
    first = photos.corpus(3, tmp_path)
    assert len({p.path.read_bytes() for p in first}) == 3
    for photo in first:
        image = Image.open(photo.path)
        assert (image.format, image.size) == ("JPEG", photo.recipe.size)
    stamps = [p.path.stat().st_mtime_ns for p in first]
    assert [p.path.stat().st_mtime_ns for p in photos.corpus(3, tmp_path)] == stamps


def _span(span_id, process, name, start_ms, duration_ms, parent=None, kind=None, topic=None,
          topic_tag="messaging.destination.name"):
    tags = {"span.kind": kind, topic_tag: topic}
    return {"spanID": span_id, "processID": process, "operationName": name, "startTime": start_ms * 1000,
            "duration": duration_ms * 1000, "references": [{"refType": "CHILD_OF", "spanID": parent}] if parent else [],
            "tags": [{"key": k, "value": v} for k, v in tags.items() if v]}


SUBMITTED = "photocraft.jobs.submitted"


def test_hops_split_a_trace_by_service_kafka_topic_and_inner_span():
    trace = {"processes": {"p1": {"serviceName": "photocraft-gateway"}, "p2": {"serviceName": "photocraft-scheduler"},
                           "p3": {"serviceName": "photocraft-gpu-inference"}},
             "spans": [
                 _span("a", "p1", "job remove-background", 0, 40),
                 _span("b", "p1", f"{SUBMITTED} publish", 30, 8, "a", "producer", SUBMITTED),
                 _span("c", "p2", f"{SUBMITTED} process", 45, 6, "b", "consumer", SUBMITTED),
                 _span("d", "p3", "task 0123456789abcdef0123", 60, 300, "c"),
                 _span("e", "p3", "triton u2netp", 100, 150, "d"),
                 _span("f", "p3", "S3.PutObject", 260, 20, "d"),
                 _span("g", "p3", "S3.PutObject", 285, 10, "d"),
                 _span("h", "p3", "photocraft.tasks.results create", 290, 0, "d", "producer"),
                 _span("i", "p2", "photocraft.tasks.results process", 400, 5, "h", "consumer",
                       "photocraft.tasks.results", "messaging.destination_publish.name"),
                 _span("j", "p1", f"{SUBMITTED} publish", 35, 1, "a", "producer", SUBMITTED),
                 _span("k", "p2", f"{SUBMITTED} process", 40, 1, "j", "consumer", SUBMITTED),
             ]}
    hops = traces.hops(trace)
    assert hops["trace"] == 405  # 0 to 405 ms
    assert hops["gateway"] == 40 and hops["scheduler"] == 12 and hops["gpu-inference"] == 300
    assert hops["gateway: own code"] == 31 and hops["gpu-inference: own code"] == 120  # outside child spans
    assert hops["kafka photocraft.jobs.submitted"] == 15  # the slower message: published at 30 ms, consumed at 45
    assert hops["kafka photocraft.tasks.results"] == 110
    assert hops["gateway: photocraft.jobs.submitted publish"] == 9  # both publishes
    assert hops["gpu-inference: triton u2netp"] == 150
    assert hops["gpu-inference: S3.PutObject"] == 30  # both puts
    assert "gpu-inference" in hops and not any("0123456789" in k for k in hops)


def _cut_out(alpha: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([np.zeros(alpha.shape + (3,), np.uint8), alpha])).save(buffer, format="PNG")
    return buffer.getvalue()


def test_iou_of_two_cut_outs_alpha_above_one_half():
    left = np.zeros((4, 4), np.uint8)
    left[:, :2] = 255
    right = np.zeros((4, 4), np.uint8)
    right[:, 1:3] = 200
    right[:, 3] = 100  # below 0.5: background
    assert speed.iou(speed.alpha_mask(_cut_out(left)), speed.alpha_mask(_cut_out(right))) == pytest.approx(4 / 12)


def test_a_cut_out_without_alpha_is_refused():
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, format="PNG")
    with pytest.raises(ValueError, match="without alpha"):
        speed.alpha_mask(buffer.getvalue())


def _results(ours_s: float, model_s: float, rembg_s: float, cold: dict | None = None) -> dict:
    one = [{"ours_s": ours_s, "model_s": model_s, "rembg_s": rembg_s, "iou": 0.9, "band": "1-2.5 MP"}] * 4
    result = {"one": one, "all": {"photos": 4, "jobs_s": 6.0, "batch_s": 5.0, "rembg_p_s": [10.0, 10.0]},
              "multi": {"enhance x2": {"ours_s": 12.0, "seconds": 10.0}}}
    return {**result, "cold": cold} if cold else result


def test_verdicts_compare_each_figure_with_its_target():
    met = {target: ok for target, _, ok in speed_report.verdicts(_results(0.6, 0.45, 1.0))}
    assert met[speed_report.TARGETS["one p50"]] is True  # 0.6 x
    assert met[speed_report.TARGETS["batch"]] is True  # 0.5 x
    assert met[speed_report.TARGETS["jobs"]] is True  # 0.6 x
    assert met[speed_report.TARGETS["overhead p50"]] is False  # 150 ms
    assert met[speed_report.TARGETS["enhance x2"]] is False  # 1.2 x
    assert met[speed_report.TARGETS["tracing"]] is None  # not measured without --cold


def test_tracing_cost_is_the_throughput_lost_with_tracing_on():
    rows = speed_report.verdicts(_results(0.6, 0.55, 1.0, {"throughput_on": 0.96, "throughput_off": 1.0}))
    figure, met = next((f, m) for t, f, m in rows if t == speed_report.TARGETS["tracing"])
    assert met is True and figure.startswith("+4.0%")


def test_the_tracing_figures_say_each_restarts_throughput_in_turn():
    cold = {"throughputs_off": [2.0, 1.8], "throughputs_on": [1.9, 1.7]}
    assert speed_report._each_way(cold) == "means of 2 runs each way, in turn: off 2.00, on 1.90; off 1.80, on 1.70"
    assert speed_report._each_way({"throughput_off": 2.0, "throughput_on": 1.9}) == "one run each way"
