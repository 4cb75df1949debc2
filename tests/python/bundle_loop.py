"""A minimal, obviously-correct cache loop over an exported bundle, used by
the export tests as an independent check of the graph contract (the product
runner lives in staticllm.generate). Each cache group is a ring: position q
lives in slot q % length, and a row at position p sees the positions
max(0, p - window + 1) .. p."""

from __future__ import annotations

import numpy as np

import staticllm
from staticllm.llm_section import LLMSpec


class BundleLoop:
    def __init__(self, bundle: str, backend: str = "mil") -> None:
        self.rt = staticllm.Runtime.load(bundle, backend=backend)
        self.llm = LLMSpec.from_metadata(self.rt.metadata)
        self.dtype = np.float16 if self.llm.dtype == "fp16" else np.float32
        self.caches = {}
        for g in self.llm.groups:
            for name in self.llm.group_caches(g)[0]:
                self.caches[name] = np.zeros(self.llm.cache_shape(g), self.dtype)
        self.n_past = 0

    def _mask(self, g, pos: np.ndarray) -> np.ndarray:
        """[1, L, length + L]: cache slot s holds the latest position q < n_past with q % length == s."""
        length, window = g.length, g.window or 1 << 30
        slot_pos = np.full(length, -1)
        for q in range(max(0, self.n_past - length), self.n_past):
            slot_pos[q % length] = q
        p = pos[:, None]
        cache_ok = (slot_pos[None] >= 0) & (slot_pos[None] > p - window)
        new_ok = (pos[None] <= p) & (pos[None] > p - window)
        return np.where(np.concatenate([cache_ok, new_ok], axis=1), 0, -np.inf)[None].astype(self.dtype)

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
        feed = {"tokens": ids, "input_pos": pos, **self.caches}
        for g in self.llm.groups:
            feed[g.mask] = self._mask(g, pos)
        if spec.logits == "last" and length > 1:
            feed["last_index"] = np.array([n - 1], np.int32)
        out = m.execute(feed)
        for g in self.llm.groups:
            for cin, cout in zip(*self.llm.group_caches(g)):
                for j in range(n):
                    self.caches[cin][:, :, (self.n_past + j) % g.length] = out[cout][:, :, j]
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
