"""Model backends: one OpenAI-compatible client, one batched HF generator, vLLM."""
