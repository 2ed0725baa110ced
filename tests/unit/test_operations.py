"""The operation catalogue and the stage graph of a recipe."""

from __future__ import annotations

import pytest

from photocraft_common.operations import (
    OPERATIONS,
    Operation,
    RemoveBackgroundParams,
    Stage,
    UnknownOperation,
    ValidationError,
    get_operation,
)


def test_unknown_operation_names_the_known_ones():
    with pytest.raises(UnknownOperation, match="remove-background"):
        get_operation("paint-a-moustache")


def test_every_operation_has_stages_on_named_models():
    for operation in OPERATIONS.values():
        assert operation.stages and all(stage.model for stage in operation.stages)
        names = [stage.name for stage in operation.stages]
        assert len(names) == len(set(names))
        assert all(set(stage.needs) <= set(names) for stage in operation.stages)


@pytest.mark.parametrize("raw", [None, "", "{}", {}])
def test_remove_background_takes_empty_params(raw):
    assert get_operation("remove-background").parse_params(raw or None) == RemoveBackgroundParams()


def test_params_reject_unknown_fields_and_non_objects():
    operation = get_operation("remove-background")
    with pytest.raises(ValidationError):
        operation.parse_params('{"colour": "red"}')
    with pytest.raises(ValueError, match="JSON object"):
        operation.parse_params("[1]")
    with pytest.raises(ValueError):
        operation.parse_params("{oops")


def test_stage_graph_releases_stages_as_their_dependencies_finish():
    #  a ──> b ──> d
    #  └──> c ──┘
    op = Operation("diamond", RemoveBackgroundParams, (
        Stage("a", "m1"), Stage("b", "m2", ("a",)), Stage("c", "m1", ("a",)), Stage("d", "m3", ("b", "c"))))

    assert op.models == ("m1", "m2", "m3")
    assert [s.name for s in op.ready_stages(done=set(), started=set())] == ["a"]
    assert op.ready_stages(done=set(), started={"a"}) == []
    assert [s.name for s in op.ready_stages(done={"a"}, started={"a"})] == ["b", "c"]
    assert [s.name for s in op.ready_stages(done={"a", "b"}, started={"a", "b", "c"})] == []
    assert [s.name for s in op.ready_stages(done={"a", "b", "c"}, started={"a", "b", "c"})] == ["d"]
    assert [s.name for s in op.final_stages()] == ["d"]
