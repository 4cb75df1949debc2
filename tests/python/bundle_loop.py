"""A minimal, obviously-correct cache loop over an exported bundle, used by
the export tests as an independent check of the graph contract (the product
runner lives in staticllm.generate)."""

from __future__ import annotations

import numpy as np

import staticllm
from staticllm.llm_section import LLMSpec


class BundleLoop:
    def __init__(self, bundle: str, backend: str = "mil") -> None:
        self.rt = staticllm.Runtime.load(bundle, backend=backend)
        self.llm = LLMSpec.from_metadata(self.rt.metadata)
        self.cache_len = self.llm.cache_len
        self.dtype = np.float16 if self.llm.dtype == "fp16" else np.float32
        self.caches = {name: np.zeros(self.llm.cache_shape, self.dtype) for name in self.llm.io.cache_inputs}
        self.n_past = 0

    def step(self, method_name: str, tokens: list[int]) -> np.ndarray:
        """Runs `tokens` (padded to the method's length); returns logits rows of the real tokens."""
        m = self.rt.method(method_name)
        spec = self.llm.methods[method_name]
        length = spec.input_len
        n = len(tokens)
        assert 0 < n <= length
        ids = np.zeros((1, length), np.int32)
        ids[0, :n] = tokens
        pos = np.arange(self.n_past, self.n_past + length, dtype=np.int32)
        mask = np.full((1, length, self.cache_len + length), -np.inf, np.float32)
        mask[0, :, : self.n_past] = 0
        mask[0, :, self.cache_len :] = np.triu(np.full((length, length), -np.inf, np.float32), 1)
        feed = {"tokens": ids, "input_pos": pos, "attn_mask": mask.astype(self.dtype), **self.caches}
        if spec.logits == "last" and length > 1:
            feed["last_index"] = np.array([n - 1], np.int32)
        out = m.execute(feed)
        for cin, cout in zip(self.llm.io.cache_inputs, self.llm.io.cache_outputs):
            self.caches[cin][:, :, self.n_past : self.n_past + n] = out[cout][:, :, :n]
        self.n_past += n
        logits = out["logits"].astype(np.float32)
        return logits[0, :n] if logits.ndim == 3 else logits

    def greedy(self, prompt: list[int], n_new: int) -> list[int]:
        pre, dec = self.llm.prefill_method, self.llm.decode_method
        chunk = self.llm.methods[pre].input_len
        logits = None
        for i in range(0, len(prompt), chunk):
            logits = self.step(pre, prompt[i : i + chunk])
        out = [int(logits[-1].argmax())]
        while len(out) < n_new:
            logits = self.step(dec, [out[-1]])
            out.append(int(logits[-1].argmax()))
        return out
