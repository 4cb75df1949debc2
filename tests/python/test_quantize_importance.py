"""Importance-weighted palettization: the weighted k-means minimizes the
weighted squared error (not the plain one), and each linear layer's
importance is the mean square of the inputs it sees on the calibration ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llama_fixtures import random_state_dict, tiny_config
from staticllm.exporter import build_model
from staticllm.exporter.quantize import kmeans_groups
from staticllm.exporter.quantize_importance import input_importance


def _weighted_error(x, importance, tables, idx):
    picked = np.take_along_axis(tables, idx, 1)
    return float((importance * (x - picked) ** 2).sum())


def test_weighted_kmeans_trades_quiet_channels_for_loud_ones():
    rng = np.random.default_rng(0)
    x = (0.05 * rng.standard_normal((6, 256))).astype(np.float16).astype(np.float64)
    importance = np.where(np.arange(256) < 32, 100.0, 1.0)[None, :]  # 32 loud input channels
    plain = kmeans_groups(x, 16)
    weighted = kmeans_groups(x, 16, importance)
    assert _weighted_error(x, importance, *weighted) < 0.8 * _weighted_error(x, importance, *plain)
    ones = np.ones((1, 256))
    assert _weighted_error(x, ones, *plain) <= _weighted_error(x, ones, *weighted)
    same = kmeans_groups(x, 16, ones)  # equal importance is the plain k-means
    np.testing.assert_array_equal(same[0], plain[0])
    np.testing.assert_array_equal(same[1], plain[1])


def test_kmeans_in_batches_of_rows_gives_the_same_tables(monkeypatch):
    """Rows are clustered a batch at a time to bound memory (a Gemma 3
    embedding is 262,144 rows); every row converges on its own, so the
    tables and indices must not depend on the batch size."""
    from staticllm.exporter import quantize

    rng = np.random.default_rng(1)
    x = (0.05 * rng.standard_normal((37, 96))).astype(np.float16).astype(np.float64)
    x[5] = np.round(x[5] * 40) / 40  # a row with few distinct values takes the exact path
    importance = rng.uniform(0.1, 10.0, (1, 96))
    whole = kmeans_groups(x, 16, importance)
    monkeypatch.setattr(quantize, "KMEANS_BATCH_VALUES", 5 * 96)  # batches of 5 rows, the last of 2
    batched = kmeans_groups(x, 16, importance)
    np.testing.assert_array_equal(batched[0], whole[0])
    np.testing.assert_array_equal(batched[1], whole[1])
    assert whole[0].shape == (37, 16) and whole[1].shape == (37, 96)


@pytest.mark.parametrize("tied", [False, True])
def test_input_importance_is_the_mean_square_input_of_each_linear(tied):
    from staticllm.exporter.checkpoints import Checkpoint

    cfg = tiny_config(tied_embeddings=tied)
    sd = random_state_dict(cfg)
    if tied:  # torch's state_dict lists the shared tensor under both names; a checkpoint has one
        del sd["lm_head.weight"]
    model = build_model(Checkpoint(cfg, sd, "random weights"), 64)
    ids = list(range(5, 45))
    model.logits_mode = "last"
    stats = input_importance(model, ids)
    linears = {n for n, p in model.named_parameters() if p.ndim == 2 and n != model.embedding_name}
    assert linears <= set(stats)
    with torch.no_grad():
        x = model.model.layers[0].input_layernorm(model.model.embed_tokens(torch.tensor(ids)))
    want = (x.double() ** 2).mean(0).numpy()
    for w in ("q_proj", "k_proj", "v_proj"):
        np.testing.assert_allclose(stats[f"model.layers.0.self_attn.{w}.weight"], want, rtol=1e-5)
    if tied:  # the embedding is the LM head: it gets the head's inputs
        np.testing.assert_array_equal(stats[model.embedding_name], stats[model.lm_head_name])
    else:
        assert model.embedding_name not in stats
    assert model.logits_mode == "last"  # the pass left the model as it found it
