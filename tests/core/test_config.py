import pytest

from synthtune.core.config import load_params
from synthtune.core.errors import ParamsError


def test_shipped_params_load(root):
    params = load_params(root / "params.yaml")
    assert params.model.name == "tiny"
    assert "recipe_tod" in params.sources
    assert isinstance(params.train.lr, float)


def _write(tmp_path, root, old, new):
    text = (root / "params.yaml").read_text()
    assert old in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(old, new, 1))
    return path, text.replace(old, new, 1).splitlines()


def test_unknown_key_is_named_with_its_line(tmp_path, root):
    path, lines = _write(tmp_path, root, "  lr: 2.0e-3", "  lrr: 2.0e-3")
    line = next(i for i, text in enumerate(lines, 1) if "lrr:" in text)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}:{line}: train.lrr: unknown key")


def test_number_written_as_string_is_rejected(tmp_path, root):
    path, _ = _write(tmp_path, root, "  lr: 2.0e-3", "  lr: 2e-3")   # YAML reads 2e-3 as a string
    with pytest.raises(ParamsError, match=r"train\.lr: .*valid number.*'2e-3'"):
        load_params(path)


def test_wrong_type_in_nested_source(tmp_path, root):
    path, _ = _write(tmp_path, root, "    n_dialogues: 1000", "    n_dialogues: many")
    with pytest.raises(ParamsError, match=r"sources\.recipe_tod\.n_dialogues"):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
