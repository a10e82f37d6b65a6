import pytest

from synthtune.core.config import load_params
from synthtune.core.errors import ParamsError


def test_shipped_params_load(root):
    params = load_params(root / "params.yaml")
    assert params.model.name == "smollm2-135m-instruct"
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
    path, _ = _write(tmp_path, root, "    n_dialogues: 300", "    n_dialogues: many")
    with pytest.raises(ParamsError, match=r"sources\.recipe_tod\.n_dialogues"):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- defaults: params.yaml is the source of truth

SOURCE_IDENTITY = {"kind", "path", "domain", "teacher"}   # what each source entry says about itself


def _section_fields(model):
    from pydantic import BaseModel

    for key, field in model.model_fields.items():
        nested = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        yield key, field, nested


def _default_mismatches(model, values: dict, prefix: str):
    from pydantic import TypeAdapter
    from pydantic_core import PydanticUndefined

    for key, field, nested in _section_fields(model):
        where = f"{prefix}{key}"
        if key not in values:
            yield f"{where}: not set in params.yaml"
        elif nested is not None:
            yield from _default_mismatches(nested, values[key], where + ".")
        elif (default := field.get_default(call_default_factory=True)) is PydanticUndefined:
            yield f"{where}: no default"
        elif TypeAdapter(field.annotation).dump_python(default) != values[key]:
            yield f"{where}: default {default!r} != params.yaml {values[key]!r}"


def test_every_default_equals_params_yaml(root):
    """Code and tests that build a section with defaults get exactly what params.yaml runs with."""
    import yaml

    from synthtune.core.config import Params, source_params_class

    data = yaml.safe_load((root / "params.yaml").read_text())
    problems = []
    for key, field, nested in _section_fields(Params):
        if key == "sources":
            continue
        if nested is None:
            if field.get_default() != data[key]:
                problems.append(f"{key}: default {field.get_default()!r} != params.yaml {data[key]!r}")
            continue
        problems += _default_mismatches(nested, data[key], key + ".")
    for name, entry in data["sources"].items():   # per kind: the keys a source sets beyond who it is
        model = source_params_class(entry["kind"])
        for key in sorted(set(entry) - SOURCE_IDENTITY):
            default = model.model_fields[key].get_default(call_default_factory=True)
            if default != entry[key]:
                problems.append(f"sources.{name}.{key}: {model.__name__} default {default!r} != {entry[key]!r}")
    assert not problems, "\n".join(problems)


def test_defaults_are_valid_and_sources_take_the_kind_model():
    from synthtune.core.config import (DialoguesSourceParams, DocQASourceParams, LoaderSourceParams, SelectParams,
                                       SourceParams, TrainParams)

    assert TrainParams().method == "lora" and SelectParams().n_samples == 400
    docqa = SourceParams(kind="docqa", path="docs")
    assert type(docqa) is DocQASourceParams and isinstance(docqa, SourceParams) and docqa.chunk_tokens == 128
    assert type(SourceParams(kind="dialogues", path="c.json")) is DialoguesSourceParams
    csv = SourceParams(kind="csv", path="x.csv", mapping={"prompt": "q"})
    assert type(csv) is LoaderSourceParams and csv.teacher is None and csv.mapping == {"prompt": "q"}
    assert type(SourceParams.model_validate({"kind": "docqa", "path": "d"})) is DocQASourceParams


# ---------------------------------------------------------------- sources: each kind takes exactly its keys

def _add_source(tmp_path, root, entry: str):
    return _write(tmp_path, root, "  qa_docs:\n", "  mine:\n" + entry + "  qa_docs:\n")


def _line(lines, needle):
    return next(i for i, text in enumerate(lines, 1) if needle in text)


def test_key_of_another_kind_is_named_with_its_line(tmp_path, root):
    path, lines = _add_source(tmp_path, root, "    kind: csv\n    path: x.csv\n    n_dialogues: 5\n")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == (f"{path}:{_line(lines, 'n_dialogues: 5')}: sources.mine.n_dialogues: unknown key "
                              "for a 'csv' source (allowed: allow_outside_repo, domain, kind, license, mapping, options, path)")


def test_docqa_key_on_a_dialogue_source(tmp_path, root):
    path, lines = _write(tmp_path, root, "    max_turns: 5 ", "    chunk_tokens: 64\n    max_turns: 5 ")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}:{_line(lines, 'chunk_tokens: 64')}: sources.recipe_tod.chunk_tokens: "
                                     "unknown key for a 'dialogues' source")


def test_loader_source_keys_load(tmp_path, root):
    path, _ = _add_source(tmp_path, root, "    kind: oasst\n    path: o.jsonl\n    options: {lang: de}\n")
    source = load_params(path).sources["mine"]
    assert source.kind == "oasst" and dict(source.options) == {"lang": "de"} and source.domain == "general"


def test_unknown_kind_is_named_with_its_line(tmp_path, root):
    import synthtune.generate.loaders  # noqa: F401  the registry the kind is checked against

    path, lines = _add_source(tmp_path, root, "    kind: xml\n    path: x.xml\n")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == (f"{path}:{_line(lines, 'kind: xml')}: sources.mine.kind: unknown source kind "
                              "(known: alpaca, api_code, chat, csv, dialogues, docqa, hf, oasst, qa_json, text) (got 'xml')")


def test_loader_kinds_come_from_the_registry_handed_to_config(tmp_path, root, monkeypatch):
    from synthtune.core import config

    path, _ = _add_source(tmp_path, root, "    kind: parquet_rows\n    path: x.parquet\n")
    monkeypatch.setattr(config, "_loader_kinds", {"parquet_rows": object()})
    assert load_params(path).sources["mine"].kind == "parquet_rows"
    monkeypatch.setattr(config, "_loader_kinds", {})
    with pytest.raises(ParamsError, match=r"sources\.mine\.kind: unknown source kind \(known: api_code, dialogues, docqa\)"):
        load_params(path)
    monkeypatch.setattr(config, "_loader_kinds", None)    # registry never imported: any kind name passes
    assert load_params(path).sources["mine"].kind == "parquet_rows"


def test_missing_source_key_is_named(tmp_path, root):
    path, lines = _add_source(tmp_path, root, "    kind: csv\n")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == f"{path}:{_line(lines, '  mine:')}: sources.mine.path: required key is missing"


# ---------------------------------------------------------------- rules over several keys, duplicates, names

def test_val_and_test_fractions_must_leave_a_train_split(tmp_path, root):
    path, lines = _write(tmp_path, root, "  val_fraction: 0.1", "  val_fraction: 0.6")
    path.write_text(path.read_text().replace("  test_fraction: 0.1", "  test_fraction: 0.4", 1))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == (f"{path}:{_line(lines, 'val_fraction:')}: prepare.val_fraction + prepare.test_fraction "
                              f"(line {_line(lines, 'test_fraction:')}): must sum to less than 1, or nothing is left "
                              "to train on (got 0.6 + 0.4)")
    path.write_text(path.read_text().replace("  test_fraction: 0.4", "  test_fraction: 0.3", 1))
    assert load_params(path).prepare.test_fraction == 0.3      # 0.9 leaves a train split


def test_a_fraction_left_to_its_default_is_named_without_a_line(tmp_path, root):
    from synthtune.core.config import PrepareParams

    path, lines = _write(tmp_path, root, "  val_fraction: 0.1", "  val_fraction: 0.95")
    path.write_text(path.read_text().replace("  test_fraction: 0.1\n", "", 1))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == (f"{path}:{_line(lines, 'val_fraction:')}: prepare.val_fraction + prepare.test_fraction: "
                              "must sum to less than 1, or nothing is left to train on (got 0.95 + 0.1)")
    with pytest.raises(ValueError, match="must sum to less than 1"):
        PrepareParams(val_fraction=0.5, test_fraction=0.5)


def test_keys_error_names_the_missing_key_of_a_model_validator(tmp_path):
    """What a model validator raises with keys_error names its key, not just the section (loc is the section)."""
    from synthtune.core.params_yaml import keys_error, keys_message, read_params_yaml

    path = tmp_path / "p.yaml"
    path.write_text("sources:\n  z:\n    kind: hf\n")
    _, lines = read_params_yaml(path, path.read_text())
    error = keys_error("missing", "required key is missing", ("path",))
    assert keys_message(path, lines, ("sources", "z"), error.context, "required key is missing") == \
        f"{path}:2: sources.z.path: required key is missing"


@pytest.mark.parametrize("old,new,key,where", [
    ("  lr: 2.0e-3", "  lr: 1.0e-3\n  lr: 2.0e-3", "lr", "in train"),
    ("    max_turns: 5 ", "    max_turns: 5 \n    max_turns: 6", "max_turns", "in sources.recipe_tod"),
    ("seed: 42", "seed: 42\nseed: 7", "seed", "at the top level")])
def test_duplicate_key_is_named_with_both_lines(tmp_path, root, old, new, key, where):
    path, lines = _write(tmp_path, root, old, new)
    first, second = [i for i, text in enumerate(lines, 1) if text.startswith(new.splitlines()[1].split(":")[0] + ":")][:2]
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == f"{path}:{second}: duplicate key {key!r} {where} (first at line {first})"


def test_yaml_merge_keys_are_no_duplicates(tmp_path, root):
    from synthtune.core.params_yaml import read_params_yaml

    path = tmp_path / "p.yaml"
    path.write_text("base: &b {lr: 1, epochs: 2}\ntrain:\n  <<: *b\n  lr: 3\n")
    data, lines = read_params_yaml(path, path.read_text())
    assert data["train"] == {"lr": 3, "epochs": 2} and lines[("train", "lr")] == 4


@pytest.mark.parametrize("name", ["my source", "-x", ".hidden", "a/b", "a:b", "é"])
def test_source_name_must_be_a_plain_word(tmp_path, root, name):
    path, lines = _add_source(tmp_path, root, "    kind: csv\n    path: x.csv\n")
    path.write_text(path.read_text().replace("  mine:\n", f"  {name!r}:\n" if ":" in name else f"  {name}:\n", 1))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == (
        f"{path}:{_line(lines, '  mine:')}: sources.{name}: a source name may hold only letters, digits, '_', '.' "
        f"and '-', and may not start with '.' or '-' (it names the stage generate@<name> and its files) (got {name!r})")


def test_source_names_with_dots_dashes_and_digits_load(tmp_path, root):
    path, _ = _add_source(tmp_path, root, "    kind: csv\n    path: x.csv\n")
    path.write_text(path.read_text().replace("  mine:\n", "  2024_v1.2-de:\n", 1))
    assert "2024_v1.2-de" in load_params(path).sources


def test_params_without_any_source_are_refused(tmp_path, root):
    text = (root / "params.yaml").read_text()
    start, end = text.index("\nsources:"), text.index("\nteacher:")
    path = tmp_path / "params.yaml"
    path.write_text(text[:start] + "\nsources: {}" + text[end:])
    with pytest.raises(ParamsError, match=r"params.yaml:\d+: sources: Dictionary should have at least 1 item"):
        load_params(path)
