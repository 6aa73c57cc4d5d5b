import pytest

from stopcli.errors import UsageError
from stopcli.presets import list_preset_paths, load_preset, parse_preset


def test_every_shipped_preset_loads():
    names = {p.stem for p in list_preset_paths()}
    assert {"default", "llava-onevision-qwen2-0.5b-ov", "llava-onevision-qwen2-7b-ov", "llava-video-7b-qwen2"} <= names
    for path in list_preset_paths():
        preset, _ = load_preset(str(path))
        assert preset.name == path.stem


# Hub checkpoints cannot be downloaded here: the presets name the publishers' ids, whose config.json model_type
# (as published) must have an adapter; the adapters run on tiny configs of the same model types in tests/backbones.
NEW_FAMILIES = {"qwen3-vl-2b-instruct": ("Qwen/Qwen3-VL-2B-Instruct", "qwen3_vl"),
                "qwen3-vl-8b-instruct": ("Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl"),
                "qwen3.5-9b": ("Qwen/Qwen3.5-9B", "qwen3_5"),
                "internvl3.5-8b-hf": ("OpenGVLab/InternVL3_5-8B-HF", "internvl")}


@pytest.mark.parametrize("name", sorted(NEW_FAMILIES))
def test_presets_of_the_newer_backbones_name_supported_checkpoints(name):
    from stopcli.backbones import ADAPTERS

    preset, _ = load_preset(name)
    model, model_type = NEW_FAMILIES[name]
    assert preset.model == model and model_type in ADAPTERS
    assert preset.frames % 2 == 0 or model_type == "internvl"  # Qwen: whole temporal patches of 2 frames


def test_default_preset_model_is_shipped_in_the_package():
    preset, origin = load_preset("default")
    folder = preset.resolved_model(origin)
    from pathlib import Path
    assert (Path(folder) / "model.safetensors").is_file() and (Path(folder) / "config.json").is_file()


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "model": "m", "colour": 1}, "unknown key 'colour'"),
    ({"name": "x", "model": "m", "frames": "8"}, "'frames' must be int"),
    ({"name": "x", "model": "m", "frames": True}, "'frames' must be int"),
    ({"name": "x", "model": "m", "stop": "yes"}, "'stop' must be bool"),
    ({"name": "x", "model": "m", "ratio": 1.0}, r"\[0, 1\)"),
    ({"name": "x", "model": "m", "pruner": "tome"}, "unknown pruner"),
    ({"name": "x", "model": "m", "sink_score": "zscore"}, "unknown sink score 'zscore'"),
    ({"name": "x", "model": "m", "sink_score": 1}, "'sink_score' must be str"),
    ({"name": "x"}, "missing required key 'model'"),
    (["a", "b"], "expected a mapping"),
])
def test_bad_presets_are_refused_with_the_reason(data, message):
    with pytest.raises(UsageError, match=message):
        parse_preset(data, "test")


def test_relative_model_paths_resolve_from_the_preset_folder(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\nmodel: ./weights\nratio: 0\nmu_s: null\n")
    preset, origin = load_preset(str(f))
    assert preset.resolved_model(origin) == str(tmp_path / "weights")
    assert preset.ratio == 0.0 and isinstance(preset.ratio, float)


def test_bad_yaml_and_unknown_names(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_preset(str(f))
    with pytest.raises(UsageError, match="unknown preset 'nope'"):
        load_preset("nope")


def test_the_embedded_presets_use_the_robust_sink_score_and_real_checkpoints_the_authors():
    for path in list_preset_paths():
        preset, _ = load_preset(str(path))
        embedded = preset.model.startswith("stopcli:")
        assert preset.sink_score == ("robust" if embedded else "minmax"), path.name
    assert parse_preset({"name": "x", "model": "m", "sink_score": "Gated"}, "test").sink_score == "gated"
