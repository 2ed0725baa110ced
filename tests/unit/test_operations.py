"""The operation catalogue: typed parameters and the recipes they produce."""

from __future__ import annotations

import pytest

from photocraft_common.operations import (
    MODELS,
    OPERATIONS,
    UnknownOperation,
    ValidationError,
    get_operation,
    parse_params,
)

EXAMPLES = [
    ("enhance", {}), ("enhance", {"scale": 4, "denoise": 0}), ("enhance", {"scale": 1}),
    ("enhance", {"scale": 4, "upscaler": "faithful"}),
    ("remove-background", {}), ("remove-background", {"subject": "person", "background": {"type": "blur"}}),
    ("retouch", {"teeth": 1}), ("restore", {}), ("restore", {"upscale": 2, "faces": False, "colorize": False}),
    ("colorize", {}), ("text-to-image", {"prompt": "a lighthouse at dusk"}),
]


def stages(operation: str, params: dict):
    return get_operation(operation).stages(parse_params(operation, params))


def test_unknown_operation_names_the_known_ones():
    with pytest.raises(UnknownOperation, match="remove-background"):
        parse_params("paint-a-moustache", {})


@pytest.mark.parametrize(("operation", "params"), EXAMPLES)
def test_recipes_are_well_formed(operation, params):
    recipe = stages(operation, params)
    names = [s.name for s in recipe]
    assert len(names) == len(set(names))
    for position, stage in enumerate(recipe):
        assert stage.models and set(stage.models) <= set(MODELS)
        assert set(stage.needs) <= set(names[:position]), "a stage may only need earlier stages"
        assert not stage.decided_by or stage.decided_by in names[:position]


def test_every_operation_is_covered_by_an_example():
    assert {op for op, _ in EXAMPLES} == set(OPERATIONS)


def test_enhance_recipe_follows_its_parameters():
    assert [(s.name, s.models) for s in stages("enhance", {"scale": 2})] == [
        ("denoise", ("oidn",)), ("upscale", ("waifu2x_photo",)), ("tone", ("tone",))]
    no_denoise_x4 = stages("enhance", {"scale": 4, "denoise": 0})
    assert [s.models[0] for s in no_denoise_x4] == ["realesrgan_x4plus", "tone"]
    assert no_denoise_x4[1].needs == ("upscale",)
    assert [s.name for s in stages("enhance", {"scale": 1})] == ["denoise", "tone"]
    faithful = stages("enhance", {"scale": 4, "upscaler": "faithful"})
    assert [(s.name, s.models[0], s.needs) for s in faithful[1:3]] == [
        ("upscale", "waifu2x_photo", ("denoise",)), ("upscale-2", "waifu2x_photo", ("upscale",))]


def test_restore_is_decided_by_its_analysis_and_prefers_gfpgan_for_faces():
    recipe = {s.name: s for s in stages("restore", {"upscale": 2})}
    assert list(recipe) == ["analyze", "descratch", "denoise", "dejpeg", "balance", "upscale", "faces",
                            "colorize", "tone"]
    assert recipe["faces"].models == ("gfpgan", "retouch") and recipe["colorize"].optional
    assert {n for n, s in recipe.items() if s.decided_by == "analyze"} == {
        "descratch", "denoise", "dejpeg", "balance", "faces", "colorize", "tone"}


def test_missing_models_ignores_optional_stages_and_accepts_alternatives():
    restore = get_operation("restore")
    everything_but_gfpgan_and_colorize = set(MODELS) - {"gfpgan", "colorize_eccv16"}
    assert restore.missing_models(parse_params("restore", {}), everything_but_gfpgan_and_colorize) == []
    colorize = get_operation("colorize")
    assert colorize.missing_models(parse_params("colorize", {}), everything_but_gfpgan_and_colorize) == [
        "colorize_eccv16"]


def test_background_is_a_discriminated_union():
    segment = stages("remove-background", {"background": {"type": "color", "color": "#00ff00"}})[0]
    assert segment.params["background"] == {"type": "color", "color": "#00ff00"}
    with pytest.raises(ValidationError):
        parse_params("remove-background", {"background": {"type": "color", "color": "green"}})
    with pytest.raises(ValidationError):
        parse_params("remove-background", {"background": {"type": "plaid"}})


@pytest.mark.parametrize(("operation", "params"), [
    ("remove-background", {"colour": "red"}),
    ("remove-background", {"output": {"format": "jpeg"}}),  # transparency needs png or webp
    ("enhance", {"scale": 3}),
    ("enhance", {"denoise": 1.5}),
    ("retouch", {"skin": -0.1}),
    ("text-to-image", {}),
    ("text-to-image", {"prompt": "x", "width": 500}),
    ("text-to-image", {"prompt": "x", "width": 2048, "height": 1024}),
    ("text-to-image", {"prompt": "x", "steps": 0}),
])
def test_bad_parameters_are_refused(operation, params):
    with pytest.raises(ValidationError):
        parse_params(operation, params)


def test_params_must_be_a_json_object():
    with pytest.raises(ValueError, match="JSON object"):
        parse_params("retouch", "[1]")
    with pytest.raises(ValueError):
        parse_params("retouch", "{oops")


def test_text_to_image_draws_a_seed_once_and_keeps_it():
    first = parse_params("text-to-image", {"prompt": "a cat"})
    again = parse_params("text-to-image", first.model_dump_json())
    assert again.seed == first.seed and 0 <= first.seed < 2**31


def test_input_size_limits_depend_on_the_parameters():
    enhance = get_operation("enhance")
    limits = [enhance.max_input_megapixels(parse_params("enhance", {"scale": s})) for s in (1, 2, 4)]
    assert limits == sorted(limits, reverse=True)
