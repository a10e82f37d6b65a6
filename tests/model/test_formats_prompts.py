"""Train-time and predict-time renderings agree; loss masks cover assistant turns only (batching: test_generation)."""
from synthtune.core.config import FormatParams
from synthtune.evaluate.predict import render_prompts
from synthtune.model.formats import annotation_line, fit_length, parse_annotation, prompt_messages, to_chat


def test_assistant_turns_carry_the_state_annotation(dialogues):
    example = to_chat(dialogues[0])
    user_turns = [m for m in dialogues[0]["messages"] if m["role"] == "user"]
    assert len(example["gold"]) == len(user_turns)
    for turn in example["gold"]:
        intent, slots, reply = parse_annotation(example["messages"][turn["index"]]["content"])
        assert (intent, slots, reply) == (turn["intent"], turn["slots"], turn["reply"])


def test_parse_annotation_of_garbage():
    assert parse_annotation("no json here")[0] is None
    assert parse_annotation('{"intent": 3}\nx')[0] is None
    assert parse_annotation(annotation_line({"intent": "deny"}) + "\nok") == ("deny", {}, "ok")


def test_prompt_is_a_token_prefix_of_the_training_sequence(dialogues, tiny_tokenizer):
    for dialogue in dialogues[:10]:
        example = to_chat(dialogue)
        full = tiny_tokenizer.apply_chat_template(example["messages"], tokenize=True, return_dict=True)["input_ids"]
        for turn in example["gold"]:
            prompt = render_prompts(tiny_tokenizer, [prompt_messages(example, turn)])[0]
            assert full[: len(prompt)] == prompt
            target = tiny_tokenizer(example["messages"][turn["index"]]["content"] + "<|end|>",
                                    add_special_tokens=False)["input_ids"]
            assert full[len(prompt): len(prompt) + len(target)] == target


def test_loss_mask_covers_exactly_the_assistant_turns(dialogues, tiny_tokenizer):
    example = to_chat(dialogues[1])
    out = tiny_tokenizer.apply_chat_template(example["messages"], tokenize=True, return_dict=True,
                                             return_assistant_tokens_mask=True)
    trained = tiny_tokenizer.decode([t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m])
    expected = "".join(m["content"] + "<|end|>" for m in example["messages"] if m["role"] == "assistant")
    assert trained == expected
    assert "<|user|>" not in trained and dialogues[1]["messages"][0]["content"] not in trained


def test_fit_length_truncates_whole_turns(dialogues, tiny_tokenizer):
    example = to_chat(dialogues[2])
    fitted = fit_length(example, tiny_tokenizer, FormatParams(max_length=120, overflow="truncate_turns"))
    assert fitted is not None and fitted["messages"][-1]["role"] == "assistant"
    assert len(fitted["gold"]) < len(example["gold"])
    assert fit_length(example, tiny_tokenizer, FormatParams(max_length=120, overflow="drop")) is None


def test_format_leaves_prompt_only_records_out_of_training(dialogues, tiny_tokenizer):
    from synthtune.model.formats import format_split

    prompt = {"id": "p", "source": "eval", "group": "g", "meta": {"prompt_only": True},
              "messages": [{"role": "user", "content": "write a loop"}]}
    examples, counts = format_split([dialogues[0], prompt], tiny_tokenizer, FormatParams(max_length=2048))
    assert [e["id"] for e in examples] == [dialogues[0]["id"]] and counts["skipped_prompt_only"] == 1
