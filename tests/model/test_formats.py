"""Format renderings (format.template): what each writes, that predict's prompt is exactly what training saw,
few-shot, length fit."""
import json

import pytest

from synthtune.core.config import FormatParams, load_params
from synthtune.core.errors import ParamsError
from synthtune.evaluate.predict import render_prompts
from synthtune.generate.loaders import to_seq2seq
from synthtune.model.formats import (CONTEXT_INSTRUCTION, PROMPT_COMPLETION_RENDERINGS, RENDERING_NAMES, ShotIndex,
                                     fit_length, format_split, format_splits, length_histogram, manifest,
                                     parse_annotation, prompt_messages, render_prompt, render_records,
                                     rendering_for, to_chat)

ONE = {"id": "r1", "source": "s", "group": "g1", "messages": [
    {"role": "user", "content": "find soup", "annotations": {"intent": "search_recipe", "slots": {"query": "soup"}}},
    {"role": "assistant", "content": "Try Leek Soup."},
    {"role": "user", "content": "the first", "annotations": {"intent": "select_recipe", "slots": {"index": 1}}},
    {"role": "assistant", "content": "Leek Soup it is."}]}
DOC_QA = {"id": "q1", "source": "docs", "group": "d1", "meta": {"context": "Leeks are alliums."},
          "messages": [{"role": "user", "content": "What are leeks?"}, {"role": "assistant", "content": "Alliums."}]}
RAW = {"id": "t1", "source": "corpus", "group": "t1", "text": "Leeks grow slowly. " * 40}


def splits(dialogues, n=30):
    return {"train": dialogues[: n * 2 // 3], "val": dialogues[n * 2 // 3: n * 5 // 6], "test": dialogues[n * 5 // 6: n]}


def trl_view(row, tokenizer):
    """What TRL's SFTTrainer (1.16) tokenizes and trains on for a row: (input_ids, loss mask)."""
    if "messages" in row:   # conversational language modeling, assistant_only_loss
        out = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        return out["input_ids"], out["assistant_masks"]
    if "prompt" in row:     # prompt-completion: the completion starts where the two tokenizations diverge
        prompt = tokenizer(text=row["prompt"])["input_ids"]
        full = tokenizer(text=row["prompt"] + row["completion"])["input_ids"]
        common = next((i for i, (a, b) in enumerate(zip(prompt, full)) if a != b), min(len(prompt), len(full)))
        return full, [0] * common + [1] * (len(full) - common)
    full = tokenizer(text=row["text"])["input_ids"]
    return full, [1] * len(full)


@pytest.mark.parametrize("template", RENDERING_NAMES)
def test_predict_prompt_is_exactly_the_trained_prefix(template, dialogues, tiny_tokenizer):
    """For every rendering: the ids predict generates from are a prefix of the training sequence, the loss
    starts right after them (prompt/completion renderings) and the trained tokens that follow are the gold answer."""
    records = dialogues[:8] + [DOC_QA]
    rows, counts = format_split(records, tiny_tokenizer, FormatParams(template=template, max_length=2048))
    assert counts.get("prompt_boundary_mismatch", 0) == 0
    checked = 0
    for row in rows:
        ids, mask = trl_view(row, tiny_tokenizer)
        assert len(ids) == len(mask)
        for turn in row["gold"]:
            prompt = render_prompt(row, turn, tiny_tokenizer)
            assert ids[: len(prompt)] == prompt
            if template != "text":
                assert mask[len(prompt) - 1] == 0 and mask[len(prompt)] == 1
            following = tiny_tokenizer.decode(ids[len(prompt):])
            assert following.lstrip().startswith(json.dumps({"intent": turn["intent"], "slots": turn["slots"]},
                                                             ensure_ascii=False))
            checked += 1
        if template in PROMPT_COMPLETION_RENDERINGS:   # the whole completion is trained, nothing of the prompt
            assert tiny_tokenizer.decode([t for t, m in zip(ids, mask) if m]) == row["completion"]
    assert checked == sum(len(to_chat(d)["gold"]) for d in dialogues[:8])


def test_chat_prompt_is_the_generation_prompt(dialogues, tiny_tokenizer):
    """predict's current chat rendering (synthtune.evaluate.predict.render_prompts) is render_prompt for chat rows."""
    rows, _ = format_split(dialogues[:5], tiny_tokenizer, FormatParams(max_length=2048))
    for row in rows:
        for turn in row["gold"]:
            assert render_prompt(row, turn, tiny_tokenizer) == render_prompts(
                tiny_tokenizer, [prompt_messages(row, turn)])[0]


def test_chat_rows_are_unchanged(dialogues, tiny_tokenizer):
    """The default rendering (chat) writes what format wrote before other renderings existed (predict and score read it)."""
    params = FormatParams(max_length=300, instruction=False)
    rows, counts = format_split(dialogues, tiny_tokenizer, params)
    expected = [f for f in (fit_length(to_chat(d), tiny_tokenizer, params) for d in dialogues) if f is not None]
    assert rows == expected
    assert set(rows[0]) == {"id", "source", "group", "messages", "gold"}
    assert counts["examples"] == len(rows) and counts["truncated"] > 0


def test_chat_instruction_lists_the_train_intents_and_is_never_trained(dialogues, tiny_tokenizer):
    """format.instruction: every annotated chat row starts with one system message naming the source's
    train intents and the output layout (what a zero-shot base model needs); its tokens carry no loss,
    gold indices move with it, and rows without annotations get none."""
    from synthtune.model.formats.instruction import instruction_text

    data = splits(dialogues)
    data["test"] = data["test"] + [DOC_QA]
    out = format_splits(data, tiny_tokenizer, FormatParams(max_length=4096))
    train_intents = sorted({m["annotations"]["intent"] for d in data["train"] for m in d["messages"]
                            if "intent" in (m.get("annotations") or {})})
    assert out.intents == {"recipe_tod": train_intents}
    for split, rows in out.rows.items():
        for row in rows:
            if not row["gold"]:
                assert row["messages"][0]["role"] == "user"       # document QA: no instruction
                continue
            assert row["messages"][0] == {"role": "system", "content": instruction_text(train_intents)}
            for turn in row["gold"]:
                assert parse_annotation(row["messages"][turn["index"]]["content"])[0] == turn["intent"]
            ids, mask = trl_view(row, tiny_tokenizer)
            system_end = len(tiny_tokenizer.apply_chat_template(row["messages"][:1], tokenize=True,
                                                                 return_dict=True)["input_ids"])
            assert not any(mask[:system_end]) and any(mask)
    assert "first write one line of JSON" in instruction_text(["a", "b"]) and instruction_text(["a", "b"]).endswith("a, b.")
    assert manifest(FormatParams(), tiny_tokenizer, out.intents)["intents"] == out.intents   # predict re-renders from it
    plain = format_splits(data, tiny_tokenizer, FormatParams(max_length=4096, instruction=False))
    assert all(r["messages"][0]["role"] == "user" for r in plain.rows["train"]) and plain.intents == {}


def test_every_rendering_scores_the_same_turns(dialogues, tiny_tokenizer):
    def turn_ids(template):
        # (the chat instruction, like few-shot shots, is one more message: turn indices move by one)
        rows, _ = format_split(dialogues[:6], tiny_tokenizer, FormatParams(template=template, max_length=4096,
                                                                           instruction=False))
        return sorted(f"{r['id']}:{t['index']}" for r in rows for t in r["gold"])
    assert len({tuple(turn_ids(t)) for t in RENDERING_NAMES}) == 1


@pytest.mark.parametrize("template", PROMPT_COMPLETION_RENDERINGS)
def test_completions_parse_back_to_the_gold_turn(template, dialogues, tiny_tokenizer):
    rows, _ = format_split(dialogues[:4], tiny_tokenizer, FormatParams(template=template, max_length=4096))
    assert rows and all(set(r) == {"id", "source", "group", "prompt", "completion", "gold"} for r in rows)
    for row in rows:
        (turn,) = row["gold"]
        generated = row["completion"].removesuffix(tiny_tokenizer.eos_token).strip()
        assert parse_annotation(generated) == (turn["intent"], turn["slots"], turn["reply"])


def test_renderings_of_one_dialogue(tiny_tokenizer):
    def second(template):
        rows, _ = format_split([ONE], tiny_tokenizer, FormatParams(template=template, max_length=2048))
        return rows[-1]
    s1 = '{"intent": "search_recipe", "slots": {"query": "soup"}}'
    s2 = '{"intent": "select_recipe", "slots": {"index": 1}}'
    qa = second("qa")
    assert qa["prompt"] == f"Question: find soup\nAnswer: {s1}\nTry Leek Soup.\n\nQuestion: the first\nAnswer:"
    assert qa["completion"] == f" {s2}\nLeek Soup it is.<|end|>"
    alpaca = second("alpaca")
    assert alpaca["prompt"].startswith("Below is an instruction that describes a task, paired with an input")
    assert alpaca["prompt"].endswith(f"### Instruction:\nthe first\n\n### Input:\nUser: find soup\n"
                                     f"Assistant: {s1}\nTry Leek Soup.\n\n### Response:\n")
    seq2seq = second("seq2seq")
    chat = to_chat(ONE)
    assert seq2seq["prompt"] == to_seq2seq({"messages": chat["messages"][:4]})["input"] + "\n<Role bot>"
    syntod = second("syntod")
    assert syntod["prompt"] == (f"### INTENTS: search_recipe, select_recipe\n### HUMAN: find soup ## {s1}\n"
                                "### ASSISTANT: Try Leek Soup.\n### HUMAN: the first ##")
    assert syntod["completion"] == f" {s2}\n### ASSISTANT: Leek Soup it is.<|end|>"
    text = second("text")
    assert text["text"].startswith(f"<|user|>\nfind soup<|end|>\n<|assistant|>\n{s1}\nTry Leek Soup.<|end|>\n")
    assert text["text"][: text["gold"][1]["prompt_chars"]].endswith("<|user|>\nthe first<|end|>\n<|assistant|>\n")


def test_alpaca_uses_the_context_variant_for_document_qa(tiny_tokenizer):
    (row,), _ = format_split([DOC_QA], tiny_tokenizer, FormatParams(template="alpaca"))
    assert f"### Instruction:\n{CONTEXT_INSTRUCTION}\n\n### Input:\nLeeks are alliums.\n\nQuestion: What are leeks?" \
        in row["prompt"]
    assert row["completion"] == "Alliums.<|end|>" and row["gold"] == []
    (plain,), _ = format_split([{**DOC_QA, "meta": {}}], tiny_tokenizer, FormatParams(template="alpaca"))
    assert plain["prompt"].endswith("### Instruction:\nWhat are leeks?\n\n### Response:\n")


def test_text_rendering_keeps_raw_records_and_truncates_them(tiny_tokenizer):
    rows, counts = format_split([RAW, ONE], tiny_tokenizer, FormatParams(template="text", max_length=40))
    assert rows[0]["text"].endswith("<|end|>") and rows[0]["text"].startswith("Leeks grow slowly.")
    assert len(tiny_tokenizer(text=rows[0]["text"])["input_ids"]) <= 40 and counts["truncated"] >= 1
    rows, counts = format_split([RAW], tiny_tokenizer, FormatParams(template="text", max_length=40, overflow="drop"))
    assert rows == [] and counts["dropped_too_long"] == 1
    _, counts = format_split([RAW], tiny_tokenizer, FormatParams(template="qa"))
    assert counts["skipped_text_records"] == 1


@pytest.mark.parametrize("template", PROMPT_COMPLETION_RENDERINGS)
def test_prompt_rows_drop_old_turns_or_the_row(template, dialogues, tiny_tokenizer):
    long = max(dialogues, key=lambda d: len(d["messages"]))
    rows, counts = format_split([long], tiny_tokenizer, FormatParams(template=template, max_length=160))
    assert counts["truncated"] > 0
    assert all(len(tiny_tokenizer(text=r["prompt"] + r["completion"])["input_ids"]) <= 160 for r in rows)
    dropped, counts = format_split([long], tiny_tokenizer, FormatParams(template=template, max_length=160,
                                                                        overflow="drop"))
    assert counts["dropped_too_long"] > 0 and len(dropped) + counts["dropped_too_long"] == len(to_chat(long)["gold"])


def test_few_shot_uses_only_other_train_dialogues_within_budget(dialogues, tiny_tokenizer):
    data = splits(dialogues, 15)
    train_replies = {m["content"] for d in data["train"] for m in d["messages"]}
    params = FormatParams(template="qa", few_shot_k=3, few_shot_budget=200, max_length=1024)
    out = format_splits(data, tiny_tokenizer, params)
    assert out.metrics["train_few_shot_rows"] > 0 and out.metrics["test_few_shot_rows"] > 0
    base = format_splits(data, tiny_tokenizer, FormatParams(template="qa", max_length=1024))
    by_key = {(r["id"], r["gold"][0]["index"]): r for split in base.rows.values() for r in split}
    for split, rows in out.rows.items():
        own_texts = {m["content"] for d in data[split] for m in d["messages"]}
        for row in rows:
            plain = by_key[(row["id"], row["gold"][0]["index"])]
            if row["prompt"] == plain["prompt"]:
                continue
            assert row["prompt"].endswith(plain["prompt"]) and row["completion"] == plain["completion"]
            shots = row["prompt"][: -len(plain["prompt"])].split("\n\n")[:-1]
            assert 1 <= len(shots) <= 3
            assert len(tiny_tokenizer(text=row["prompt"])["input_ids"]) <= 200
            for shot in shots:
                reply = shot.split("\n")[-1]
                assert reply in train_replies and (split == "train" or reply not in own_texts - train_replies)
    assert format_splits(data, tiny_tokenizer, params).rows == out.rows   # deterministic


def test_shots_are_never_from_the_example_itself_or_its_dialogue():
    planted = {**ONE, "messages": [{"role": "user", "content": "zebra quinoa bake"},
                                   {"role": "assistant", "content": "Zebra Quinoa Bake, 40 min."}]}
    other = {**planted, "id": "r2", "group": "g2"}
    index = ShotIndex([to_chat(planted), to_chat(ONE)])
    assert index.nearest("s", "g1", "zebra quinoa bake", 5) == []          # only its own dialogue matches
    assert [s.user for s in index.nearest("s", "g9", "zebra quinoa bake", 5)] == ["zebra quinoa bake"]
    assert index.nearest("other-source", "g9", "zebra quinoa bake", 5) == []
    both = ShotIndex([to_chat(planted), to_chat(other)])
    assert len(both.nearest("s", "g9", "zebra quinoa", 5)) == 1           # identical shots are not repeated
    assert both.nearest("s", "g1", "zebra quinoa", 5)[0].answer == "Zebra Quinoa Bake, 40 min."


def test_few_shot_off_by_default_and_chat_shots_are_a_system_turn(dialogues, tiny_tokenizer):
    data = splits(dialogues, 15)
    assert FormatParams().few_shot_k == 0
    out = format_splits(data, tiny_tokenizer, FormatParams(few_shot_k=2, few_shot_budget=400, max_length=2048))
    shot_rows = [r for r in out.rows["val"] if r["messages"][0]["role"] == "system"]
    assert shot_rows and out.metrics["val_few_shot_rows"] == len(shot_rows)
    row = shot_rows[0]
    for turn in row["gold"]:   # gold indices moved with the inserted system turn
        assert parse_annotation(row["messages"][turn["index"]]["content"])[0] == turn["intent"]
    with pytest.raises(ParamsError, match="format.few_shot_k"):
        format_splits(data, tiny_tokenizer, FormatParams(template="text", few_shot_k=2))


def test_max_length_below_every_prompt_is_one_clear_error(tiny_tokenizer):
    wordy = {**ONE, "messages": [{**m, "content": m["content"] * 12} for m in ONE["messages"]]}
    for template in ("chat", "qa", "alpaca", "seq2seq", "syntod"):
        with pytest.raises(ParamsError, match=r"^format\.max_length: 16 tokens is shorter than the shortest prompt"):
            format_split([wordy], tiny_tokenizer, FormatParams(template=template, max_length=16))


def test_the_registry_holds_every_format_template_value():
    """params.yaml's format.template choices are exactly the registered renderings, in the same order."""
    from typing import get_args

    assert RENDERING_NAMES == get_args(FormatParams.model_fields["template"].annotation)
    assert PROMPT_COMPLETION_RENDERINGS == ("qa", "alpaca", "seq2seq", "syntod")


def test_unknown_template_names_format_template(tmp_path, root, tiny_tokenizer):
    with pytest.raises(ParamsError, match="format.template: unknown template 'jinja'"):
        rendering_for("jinja")
    with pytest.raises(ParamsError, match="format.template"):
        format_split([ONE], tiny_tokenizer, FormatParams.model_construct(template="jinja", max_length=64))
    params = (root / "params.yaml").read_text().replace("template: chat", "template: jinja", 1)
    (tmp_path / "params.yaml").write_text(params)
    with pytest.raises(ParamsError, match="format.template"):
        load_params(tmp_path / "params.yaml")


def test_metrics_histogram_and_manifest(dialogues, tiny_tokenizer):
    params = FormatParams(template="syntod", max_length=512)
    out = format_splits(splits(dialogues), tiny_tokenizer, params)
    for split in ("train", "val", "test"):
        m = {k.removeprefix(f"{split}_"): v for k, v in out.metrics.items() if k.startswith(f"{split}_")}
        assert {"examples", "tokens", "dropped_too_long", "truncated", "p50_tokens", "p95_tokens",
                "max_tokens"} <= set(m)
        assert m["p50_tokens"] <= m["p95_tokens"] <= m["max_tokens"] <= 512
        assert len(out.lengths[split]) == m["examples"] == len(out.rows[split])
    histogram = length_histogram(out.lengths, params.max_length)
    assert histogram[-1]["tokens"] >= 512 and sum(r["train"] for r in histogram) == out.metrics["train_examples"]
    info = manifest(params, tiny_tokenizer, out.intents)
    assert info["template"] == "syntod" and info["fields"] == ["prompt", "completion"]
    assert info["loss"] == "completion_only_loss" and info["eos_token"] == "<|end|>"
    assert "select_recipe" in info["intents"]["recipe_tod"]
    assert manifest(FormatParams(), tiny_tokenizer)["fields"] == ["messages"]
    # a trained model's format.json renders new records exactly as format rendered the test split
    assert render_records(splits(dialogues)["test"], tiny_tokenizer, json.loads(json.dumps(info))) == out.rows["test"]


def test_format_stage_writes_rows_manifest_plot_and_metrics(tmp_path, root, dialogues, tiny_tokenizer):
    from synthtune.core.io import read_json, read_jsonl, write_jsonl
    from stages.format import main

    base = tmp_path / "base"
    tiny_tokenizer.save_pretrained(str(base))
    (base / "manifest.json").write_text('{"name": "tiny"}')
    write_jsonl(tmp_path / "train.jsonl", dialogues[:4])
    for split, part in (("val", dialogues[4:5]), ("test", dialogues[5:6])):
        write_jsonl(tmp_path / "prepared" / f"{split}.jsonl", part)
    params = (root / "params.yaml").read_text().replace("template: chat", "template: qa", 1)
    (tmp_path / "params.yaml").write_text(params)
    main([str(tmp_path / "train.jsonl"), str(tmp_path / "prepared"), str(base), str(tmp_path / "out"),
          str(tmp_path / "metrics.json"), str(tmp_path / "plots"), "--params", str(tmp_path / "params.yaml")])
    rows = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert rows and set(rows[0]) == {"id", "source", "group", "prompt", "completion", "gold"}
    assert read_json(tmp_path / "out" / "format.json")["template"] == "qa"
    assert read_json(tmp_path / "metrics.json")["train_examples"] == len(rows)
    assert (tmp_path / "plots" / "lengths.csv").read_text().startswith("tokens,train,val,test\n")


# ---------------------------------------------------------------- huge rows: known too long by characters

class CountingTokenizer:
    """The tiny tokenizer, recording how many characters each tokenizing call was handed."""

    def __init__(self, tokenizer):
        self.tokenizer, self.sizes = tokenizer, []

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __call__(self, *args, text=None, **kwargs):
        self.sizes.append(len(text))
        return self.tokenizer(*args, text=text, **kwargs)

    def apply_chat_template(self, messages, tokenize=True, **kwargs):
        if tokenize:
            self.sizes.append(sum(len(m["content"]) for m in messages))
        return self.tokenizer.apply_chat_template(messages, tokenize=tokenize, **kwargs)


BIG = "Leeks grow slowly in cold soil. " * 32_000   # ~1 MB, ~790k word characters


@pytest.mark.parametrize("template,overflow,outcome", [
    ("chat", "truncate_turns", "truncated"), ("chat", "drop", "dropped_too_long"),
    ("qa", "truncate_turns", "dropped_too_long"), ("syntod", "drop", "dropped_too_long"),
    ("text", "truncate_turns", "truncated"), ("text", "drop", "dropped_too_long")])
def test_a_huge_row_is_dropped_or_cut_without_tokenizing_it_whole(template, overflow, outcome, tiny_tokenizer):
    """A 1 MB last reply (or raw text) is handled reading a bounded part of it, and counted as before."""
    huge_reply = {**ONE, "id": "big", "messages": ONE["messages"][:3] + [{"role": "assistant", "content": BIG}]}
    huge_text = {**RAW, "text": BIG}
    counting = CountingTokenizer(tiny_tokenizer)
    params = FormatParams(template=template, max_length=256, overflow=overflow)
    rows, counts = format_split([huge_text if template == "text" else huge_reply], counting, params)
    assert counts[outcome] == 1
    assert max(counting.sizes, default=0) < 100_000, "the huge row was tokenized whole"
    for row in rows:   # what is kept fits, the huge turn is not in it (chat) or cut (text)
        assert BIG not in json.dumps(row)
        if template == "text":
            assert row["text"].startswith("Leeks grow slowly") and len(tiny_tokenizer(text=row["text"])["input_ids"]) <= 256


def test_the_character_bound_never_changes_a_result(tiny_tokenizer, monkeypatch):
    """Rows around and past the bound come out exactly as fully tokenizing them gives (the bound is safe)."""
    from synthtune.model.formats import length_fit

    max_length = 40
    limit = length_fit.char_limit(tiny_tokenizer, max_length)
    assert limit == max_length * 13 * 4            # <|assistant|> is the tiny vocabulary's longest entry
    unit = "Leeks grow slowly. "
    sizes = [limit // 20, limit // 12, limit // 10, limit // 4, limit // 2]   # repeats: < and > the bound
    records = [{**RAW, "id": f"t{n}", "text": unit * n} for n in sizes]
    records += [{**ONE, "id": f"c{n}", "messages": ONE["messages"][:3] + [{"role": "assistant", "content": unit * n}]}
                for n in sizes]
    assert any(length_fit.cannot_fit(r.get("text") or r["messages"][-1]["content"], tiny_tokenizer, max_length)
               for r in records)
    results = {}
    for bounded in (True, False):
        if not bounded:   # no vocabulary bound: every row is tokenized whole, as before
            monkeypatch.setattr(length_fit, "max_token_chars", lambda tokenizer: None)
        results[bounded] = [format_split(records, tiny_tokenizer, FormatParams(template=t, max_length=max_length,
                                                                               overflow=o, instruction=False))
                            for t in ("chat", "qa", "text") for o in ("drop", "truncate_turns")]
    assert results[True] == results[False]
