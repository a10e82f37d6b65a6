"""vLLM offline inference for predict (optional, CUDA): imported only when `predict.backend: vllm`."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from synthtune.core.config import GenerationParams
from synthtune.core.errors import ParamsError, UserError
from synthtune.llm.requests import cut_at_stop


class VLLMBackend:
    """vLLM offline inference; a LoRA adapter is served on top of its base through LoRARequest."""

    def __init__(self, source: str, source_kwargs: dict, adapter: Path | None, seed: int, trust_remote_code: bool):
        """`source`/`source_kwargs`: what `from_pretrained` of the base takes (a folder, or a hub id with
        its pinned revision), as `synthtune.model.base_model.model_source` resolves it."""
        try:
            import vllm
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise UserError("params.yaml: predict.backend is vllm but vllm is not installed "
                            "(pip install -r requirements-gpu.txt on a CUDA machine, or use backend: hf)") from None
        kwargs = dict(source_kwargs)
        lora = adapter is not None and (Path(adapter) / "adapter_config.json").exists()
        if adapter is not None and not lora:      # full fine-tune: its own weights
            source, kwargs = str(adapter), {}
        self.lora = LoRARequest(Path(adapter).name, 1, str(adapter)) if lora else None
        rank = json.loads((Path(adapter) / "adapter_config.json").read_text())["r"] if lora else 16
        self.llm = vllm.LLM(model=source, seed=seed, trust_remote_code=trust_remote_code, enable_lora=lora,
                            max_lora_rank=max(16, rank), **kwargs)
        self.vllm = vllm

    def generate(self, conversations: Sequence[list[dict]], gen: GenerationParams) -> list[str]:
        if gen.no_repeat_ngram_size:
            raise ParamsError("params.yaml: no_repeat_ngram_size is not supported by the vllm backend")
        sampling = self.vllm.SamplingParams(
            max_tokens=gen.max_new_tokens, temperature=gen.temperature if gen.do_sample else 0.0,
            top_k=(gen.top_k or -1) if gen.do_sample else -1, top_p=gen.top_p if gen.do_sample else 1.0,
            repetition_penalty=gen.repetition_penalty, stop=list(gen.stop) or None)
        if all(isinstance(c, str) for c in conversations):     # prompt/completion templates: raw prompts
            outputs = self.llm.generate(list(conversations), sampling, lora_request=self.lora, use_tqdm=False)
        else:
            outputs = self.llm.chat([list(c) for c in conversations], sampling, lora_request=self.lora,
                                    use_tqdm=False)
        return [cut_at_stop(o.outputs[0].text, gen.stop).strip() for o in outputs]

    def perplexity(self, examples: Sequence[dict]) -> dict | None:
        return None     # not measured on vLLM (see docs/architecture.md)
