"""Generation: batching is exact, decoding knobs map to transformers, backends, roster, perplexity."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from synthtune.core.config import GenerationParams, OpenAIModelParams, PredictParams
from synthtune.core.errors import InputError, ParamsError, UserError
from synthtune.evaluate.predict import eval_turns, model_roster, require_turns, turn_prompts
from synthtune.llm.backends.hf import assistant_mask, assistant_perplexity, generate, hf_generation_kwargs
from synthtune.llm.backends.openai import OpenAIBackend
from synthtune.llm.requests import cut_at_stop
from synthtune.model.formats import prompt_messages, to_chat


@pytest.fixture(scope="module")
def lively(tiny_tokenizer):
    """The tiny architecture with large random weights: untrained-small weights answer every prompt with
    newlines only (empty after strip), which would make any equality below hold trivially."""
    from tests.conftest import TINY
    from synthtune.model.base_model import build_tiny_model

    model = build_tiny_model(tiny_tokenizer, TINY, seed=1)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0, 0.3, generator=generator)
    return model.eval()


def prompts_of(dialogue, n=6):
    example = to_chat(dialogue)
    return [prompt_messages(example, turn) for turn in example["gold"]][:n]


def test_batched_greedy_equals_one_at_a_time(dialogues, tiny_tokenizer, lively):
    prompts = prompts_of(dialogues[3]) + prompts_of(dialogues[4], 3)       # different lengths: padding matters
    batched = generate(lively, tiny_tokenizer, prompts, batch_size=9, max_new_tokens=12)
    single = [generate(lively, tiny_tokenizer, [p], batch_size=1, max_new_tokens=12)[0] for p in prompts]
    assert batched == single
    assert all(batched) and len(set(batched)) == len(prompts)             # not trivially equal
    gen = GenerationParams(batch_size=4, max_new_tokens=12, repetition_penalty=1.3, no_repeat_ngram_size=2)
    again = generate(lively, tiny_tokenizer, prompts, gen)
    assert again == [generate(lively, tiny_tokenizer, [p], gen)[0] for p in prompts] and again != batched


def test_generation_params_map_to_transformers():
    assert hf_generation_kwargs(GenerationParams(max_new_tokens=5)) == {"max_new_tokens": 5, "do_sample": False}
    sampled = hf_generation_kwargs(GenerationParams(do_sample=True, temperature=0.7, top_k=20, top_p=0.9,
                                                    no_repeat_ngram_size=2, repetition_penalty=1.15))
    assert sampled == {"max_new_tokens": 64, "do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.9,
                       "no_repeat_ngram_size": 2, "repetition_penalty": 1.15}


def test_sampling_is_seeded(dialogues, tiny_tokenizer, lively):
    gen = GenerationParams(do_sample=True, temperature=1.5, top_k=0, max_new_tokens=10, batch_size=4)
    prompts = prompts_of(dialogues[5], 4)
    a = generate(lively, tiny_tokenizer, prompts, gen, seed=3)
    assert a == generate(lively, tiny_tokenizer, prompts, gen, seed=3)
    assert a != generate(lively, tiny_tokenizer, prompts, gen, seed=4)


def test_stop_strings_cut_the_completion(dialogues, tiny_tokenizer, lively):
    assert cut_at_stop("abc\n\ndef", ["\n\n", "z"]) == "abc" and cut_at_stop("abc", []) == "abc"
    prompts = prompts_of(dialogues[6], 3)
    full = generate(lively, tiny_tokenizer, prompts, max_new_tokens=16)
    stop = next(text[len(text) // 2: len(text) // 2 + 2] for text in full if len(text) >= 4)
    cut = generate(lively, tiny_tokenizer, prompts, GenerationParams(max_new_tokens=16, stop=[stop]))
    for whole, short in zip(full, cut):
        assert stop not in short and whole.startswith(short)
    assert any(len(short) < len(whole) for whole, short in zip(full, cut))


def test_perplexity_is_exp_of_the_assistant_token_loss(dialogues, tiny_tokenizer, tiny_model):
    example = to_chat(dialogues[1])
    ids, mask = assistant_mask(tiny_tokenizer, example["messages"])
    trained = tiny_tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert trained == "".join(m["content"] + "<|end|>" for m in example["messages"] if m["role"] == "assistant")
    labels = torch.tensor([[t if m else -100 for t, m in zip(ids, mask)]])
    with torch.inference_mode():
        loss = tiny_model(input_ids=torch.tensor([ids]), labels=labels).loss.item()
    head_rows = []
    hook = tiny_model.get_output_embeddings().register_forward_hook(lambda m, a, out: head_rows.append(out.shape[0]))
    result = assistant_perplexity(tiny_model, tiny_tokenizer, [example])
    hook.remove()
    assert head_rows == [sum(mask[1:])]          # the LM head ran on the scored positions only
    assert result["val_tokens"] == sum(mask[1:]) and result["perplexity"] == pytest.approx(torch.tensor(loss).exp().item(), rel=1e-3)
    both = assistant_perplexity(tiny_model, tiny_tokenizer, [to_chat(d) for d in dialogues[:3]], batch_size=2)
    one_by_one = assistant_perplexity(tiny_model, tiny_tokenizer, [to_chat(d) for d in dialogues[:3]], batch_size=1)
    assert both["perplexity"] == pytest.approx(one_by_one["perplexity"], rel=1e-3)     # padding does not count


def test_unannotated_chat_turns_are_scored_as_replies_and_empty_tests_are_an_error():
    qa = {"id": "q", "source": "faq", "gold": [], "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "a?"},
        {"role": "assistant", "content": "b."}, {"role": "user", "content": "c?"}, {"role": "assistant", "content": "d."}]}
    assert [t["index"] for t in eval_turns(qa)] == [2, 4]
    keys, conversations = turn_prompts([qa])
    assert keys == ["q:2", "q:4"] and conversations[1][-1] == {"role": "user", "content": "c?"}
    with pytest.raises(InputError, match="test.jsonl: the test split is empty"):
        require_turns([], "test.jsonl")


def test_api_prompts_from_a_csv_without_references_are_answered(tmp_path, root, capsys, monkeypatch):
    from synthtune.evaluate.metrics.api_match import load_api_prompts
    from synthtune.evaluate.predict import predict_model

    class Echo:                                  # a backend that answers with the last user message
        def generate(self, conversations, gen):
            self.max_new_tokens = gen.max_new_tokens
            return [c[-1]["content"].upper() for c in conversations]

        def perplexity(self, examples):
            return None

    prompts = tmp_path / "prompts.csv"
    prompts.write_text('prompt\n"Draw a box, then wait"\nShow a button\n', encoding="utf-8")
    backend = Echo()
    _, api_rows, stats = predict_model(backend, [], load_api_prompts(prompts), [], PredictParams())
    assert api_rows == [{"id": "line2", "output": "DRAW A BOX, THEN WAIT"}, {"id": "line3", "output": "SHOW A BUTTON"}]
    assert stats["api_prompts"] == 2 and backend.max_new_tokens == PredictParams().api_max_new_tokens
    # the stage reads the API prompts through the same loader: a CSV without the column is one line
    from synthtune.core.cli import run_stage
    from stages import predict

    (tmp_path / "formatted").mkdir()
    (tmp_path / "formatted" / "test.jsonl").write_text(json.dumps(
        {"id": "d", "source": "s", "gold": [], "messages": [{"role": "user", "content": "q"},
                                                            {"role": "assistant", "content": "a"}]}) + "\n")
    (tmp_path / "formatted" / "val.jsonl").write_text("")
    prompts.write_text("question\nx\n")
    monkeypatch.setattr(sys, "argv", ["predict", str(tmp_path / "formatted"), str(prompts), str(tmp_path / "b"),
                                      str(tmp_path / "t"), str(tmp_path / "out"), str(tmp_path / "m.json"),
                                      "--params", str(root / "params.yaml")])
    with pytest.raises(SystemExit) as exit_info:
        run_stage(predict.main)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f'error: {prompts}: CSV has no "prompt" column (header: [\'question\']); expected .jsonl '
        '({"id"?, "prompt", "reference"?} per line) or .csv (header with a "prompt" column; "id", "reference" optional)')


def test_roster_default_adapters_and_clashes(tmp_path):
    assert [s.name for s in model_roster(PredictParams(), tmp_path)] == ["base", "tuned"]
    (tmp_path / "lr3").mkdir()
    (tmp_path / "lr3" / "adapter_config.json").write_text("{}")
    endpoint = OpenAIModelParams(base_url="http://127.0.0.1:9/v1", model="m")
    roster = model_roster(PredictParams(models=["tuned"], adapters={"lr3": str(tmp_path / "lr3")},
                                        openai={"teacher": endpoint}), tmp_path)
    assert [(s.name, s.adapter is not None, s.endpoint is not None) for s in roster] == [
        ("tuned", True, False), ("lr3", True, False), ("teacher", False, True)]
    with pytest.raises(ParamsError, match="predict.adapters.gone"):
        model_roster(PredictParams(adapters={"gone": str(tmp_path / "nope")}), tmp_path)
    with pytest.raises(ParamsError, match="majority"):
        model_roster(PredictParams(openai={"majority": endpoint}), tmp_path)


def test_vllm_backend_missing_is_one_clear_line(tmp_path):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed")
    except ImportError:
        pass
    from synthtune.llm.backends.vllm import VLLMBackend

    with pytest.raises(UserError, match="predict.backend is vllm but vllm is not installed") as err:
        VLLMBackend(str(tmp_path), {}, None, 0, False)
    assert "\n" not in str(err.value)


class _Chat(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible /v1/chat/completions: echoes the last user message, records requests."""
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"auth": self.headers.get("Authorization"), **body})
        text = f"echo {body['messages'][-1]['content']} STOP tail"
        payload = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    _Chat.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_backend_against_a_loopback_server(chat_server, monkeypatch):
    monkeypatch.setenv("TEST_KEY", "sk-test")
    endpoint = OpenAIModelParams(base_url=chat_server, model="teacher-7b", api_key_env="TEST_KEY", max_concurrency=3)
    backend = OpenAIBackend("teacher", endpoint, seed=1)
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(7)]
    answers = backend.generate(conversations, GenerationParams(max_new_tokens=9, stop=[" STOP"]))
    assert answers == [f"echo q{i}" for i in range(7)]                   # caller's order, stop string cut
    assert len(_Chat.seen) == 7 and _Chat.seen[0]["auth"] == "Bearer sk-test"
    assert {(r["model"], r["max_tokens"], r["temperature"]) for r in _Chat.seen} == {("teacher-7b", 9, 0.0)}
    assert backend.perplexity([]) is None


def test_openai_backend_errors_are_one_line(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(UserError, match="environment variable NO_SUCH_KEY is not set"):
        OpenAIBackend("t", OpenAIModelParams(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="NO_SUCH_KEY"))
    monkeypatch.setenv("K", "x")
    import socket

    with socket.socket() as sock:           # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIBackend("t", OpenAIModelParams(base_url=f"http://127.0.0.1:{port}/v1", model="m",
                                                   api_key_env="K", timeout_s=2.0), max_retries=0)
    with pytest.raises(UserError, match=r"predict.openai.t: cannot reach http://127.0.0.1:\d+/v1") as err:
        backend.generate([[{"role": "user", "content": "hi"}]], GenerationParams())
    assert "\n" not in str(err.value)


def test_prompt_templates_predict_from_the_exact_training_prompt(tiny_tokenizer):
    """Rows of the prompt/completion templates are predicted from their rendered prompt string,
    token-identical to what training saw before the completion."""
    from synthtune.evaluate.predict import render_prompts, turn_prompts
    from synthtune.model.formats import render_prompt

    row = {"id": "r1", "source": "s", "group": "g", "prompt": "Question: find soup\nAnswer:",
           "completion": ' {"intent": "search_recipe", "slots": {}}\nLeek Soup.<|end|>',
           "gold": [{"index": 1, "intent": "search_recipe", "slots": {}, "reply": "Leek Soup."}]}
    keys, prompts = turn_prompts([row])
    assert keys == ["r1:1"] and prompts == ["Question: find soup\nAnswer:"]
    assert render_prompts(tiny_tokenizer, prompts) == [render_prompt(row, row["gold"][0], tiny_tokenizer)]


def test_max_dialogues_caps_each_source_so_a_small_source_is_always_scored():
    from synthtune.evaluate.predict import eval_examples

    examples = [{"id": f"r{i}", "source": "recipe"} for i in range(5)] + [{"id": "q0", "source": "qa"}] + \
               [{"id": f"s{i}", "source": "shop"} for i in range(3)]
    assert [e["id"] for e in eval_examples(examples, 2)] == ["r0", "r1", "q0", "s0", "s1"]
    assert eval_examples(examples, 0) == examples
