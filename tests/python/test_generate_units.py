"""The generation loop's parts on real small data: masks, cache ring, sampling,
stopping, streaming, the lookahead pool, grid and layout."""

from __future__ import annotations

import numpy as np
import pytest

from generate_fixtures import make_hf_tokenizer, make_sentencepiece
from staticllm.errors import InputError
from staticllm.generate.cache import KVCache
from staticllm.generate.lookahead import (
    LayoutBuilder,
    LookaheadGrid,
    LookaheadOptions,
    NGramPool,
    resolve_options,
    rows_needed,
    verify,
)
from staticllm.generate.masks import causal_allowed, fill_mask, tree_allowed
from staticllm.generate.sampling import Sampler, SamplingOptions
from staticllm.generate.stopping import StopOptions, find_stop, partial_stop_len
from staticllm.generate.streaming import IncrementalDecoder, TextStream
from staticllm.tokenizers import load_tokenizer

# ---------------------------------------------------------------- masks


def test_mask_shows_only_written_earlier_positions_and_is_causal_among_new_tokens():
    cache_len, n = 8, 4
    slot_pos = np.full(cache_len, -1)
    slot_pos[:5] = np.arange(5)  # positions 0..4 cached
    rows = np.array([5, 6, 7, 7])  # 3 real tokens, one padding row
    out = np.empty((1, n, cache_len + n), np.float16)
    fill_mask(out, slot_pos, rows, causal_allowed(n, 3))
    seen = out[0] == 0
    assert np.all(out[0][~seen] == -np.inf)
    assert seen[:, :5].all() and not seen[:, 5:cache_len].any()
    assert seen[:, cache_len:].tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [True, True, True, False],
        [False, False, False, True],  # padding sees only itself: no all -inf row
    ]


def test_mask_follows_the_ring_after_wrapping():
    cache_len = 4
    slot_pos = np.array([4, 5, 2, 3])  # positions 4, 5 overwrote 0, 1
    out = np.empty((1, 1, cache_len + 1), np.float32)
    fill_mask(out, slot_pos, np.array([6]), causal_allowed(1, 1))
    assert (out[0, 0] == 0).tolist() == [True, True, True, True, True]
    # a row at position 4 must not see position 5 even though it is cached
    fill_mask(out, slot_pos, np.array([4]), causal_allowed(1, 1))
    assert (out[0, 0] == 0).tolist() == [False, False, True, True, True]


def test_mask_matches_attention_over_the_explicit_sequence():
    rng = np.random.default_rng(0)
    cache_len, n, d = 6, 3, 8
    keys = rng.standard_normal((10, d))
    slot_pos = np.array([6, 1, 2, 3, 4, 5])  # ring holds positions 1..6, position 0 overwritten
    cache = np.stack([keys[p] for p in slot_pos])
    new = keys[7:10]
    q = rng.standard_normal((n, d))
    mask = np.empty((1, n, cache_len + n))
    fill_mask(mask, slot_pos, np.array([7, 8, 9]), causal_allowed(n, n))
    scores = q @ np.concatenate([cache, new]).T + mask[0]
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    for j in range(n):
        visible = np.arange(1, 8 + j)  # positions 1 .. 7+j
        ref = np.exp(q[j] @ keys[visible].T - (q[j] @ keys[visible].T).max())
        ref /= ref.sum()
        got = {int(p): probs[j, s] for s, p in enumerate(slot_pos)}
        got.update({7 + i: probs[j, cache_len + i] for i in range(n)})
        np.testing.assert_allclose([got[int(p)] for p in visible], ref, rtol=1e-12)
        assert abs(sum(got[int(p)] for p in visible) - 1) < 1e-12


def test_tree_mask_sees_exactly_the_ancestors():
    parents = np.array([-1, 0, 1, 0, 3, -1])
    allowed = tree_allowed(parents)
    assert allowed[2].tolist() == [True, True, True, False, False, False]
    assert allowed[4].tolist() == [True, False, False, True, True, False]
    assert allowed[5].tolist() == [False] * 5 + [True]
    with pytest.raises(ValueError, match="parent must come before"):
        tree_allowed(np.array([1, -1]))


# ---------------------------------------------------------------- cache


def _outputs(rows, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "k_out_0": rng.standard_normal((1, 2, rows, 3)).astype(np.float16),
        "v_out_0": rng.standard_normal((1, 2, rows, 3)).astype(np.float16),
    }


def test_cache_commit_writes_rows_in_place_at_position_modulo_length():
    cache = KVCache(["k_cache_0", "v_cache_0"], ["k_out_0", "v_out_0"], (1, 2, 5, 3), np.float16)
    k_array = cache.arrays["k_cache_0"]
    out = _outputs(4)
    cache.commit(out, slice(0, 3), np.arange(3))
    assert cache.arrays["k_cache_0"] is k_array  # updated in place
    np.testing.assert_array_equal(k_array[:, :, :3], out["k_out_0"][:, :, :3])
    assert cache.slot_pos.tolist() == [0, 1, 2, -1, -1]
    out2 = _outputs(4, seed=1)
    cache.commit(out2, slice(0, 4), np.arange(3, 7))  # wraps: positions 5, 6 -> slots 0, 1
    assert cache.slot_pos.tolist() == [5, 6, 2, 3, 4]
    np.testing.assert_array_equal(k_array[:, :, 0], out2["k_out_0"][:, :, 2])
    np.testing.assert_array_equal(cache.arrays["v_cache_0"][:, :, 4], out2["v_out_0"][:, :, 1])
    assert cache.holds_window_before(0, None) and not cache.holds_window_before(3, None)
    # a ring of 5 holding positions 2..6 holds the window of 4 before position 7
    assert cache.holds_window_before(7, 4) and not cache.holds_window_before(7, None)


def test_ring_shorter_than_a_call_keeps_its_last_rows():
    cache = KVCache(["k_cache_0", "v_cache_0"], ["k_out_0", "v_out_0"], (1, 2, 3, 3), np.float32)
    out = _outputs(5)
    cache.commit(out, slice(0, 5), np.arange(10, 15))
    assert cache.slot_pos.tolist() == [12, 13, 14]
    np.testing.assert_array_equal(cache.arrays["k_cache_0"][:, :, 1], out["k_out_0"][:, :, 3])


def test_sliding_window_mask_for_every_row_of_a_chunk():
    """Window 3, ring of 3 slots holding positions 3, 4, 5; a chunk of rows at 6, 7, 8 (the
    last one padding): each row sees exactly the positions p - 2 .. p."""
    slot_pos = np.array([3, 4, 5])
    rows = np.array([6, 7, 7])
    out = np.empty((1, 3, 6), np.float32)
    fill_mask(out, slot_pos, rows, causal_allowed(3, 2), window=3)
    seen = out[0] == 0
    assert seen.tolist() == [
        [False, True, True, True, False, False],  # 6 sees 4, 5 (cache) and itself
        [False, False, True, True, True, False],  # 7 sees 5, 6 and itself
        [False, False, True, False, False, True],  # padding: the cache in its window, itself
    ]


def test_cache_commit_of_scattered_rows_and_reset():
    cache = KVCache(["k_cache_0", "v_cache_0"], ["k_out_0", "v_out_0"], (1, 2, 8, 3), np.float16)
    out = _outputs(6)
    cache.commit(out, np.array([0, 4, 5]), np.arange(3))
    np.testing.assert_array_equal(cache.arrays["k_cache_0"][:, :, :3], out["k_out_0"][:, :, [0, 4, 5]])
    assert cache.holds_window_before(3, None)
    cache.truncate(1)
    assert cache.slot_pos.tolist()[:3] == [0, -1, -1]
    cache.reset()
    assert (cache.slot_pos == -1).all()


# ---------------------------------------------------------------- sampling


def test_greedy_is_argmax_and_repetition_penalty_divides_or_multiplies():
    logits = np.array([2.0, 1.9, -1.0, -1.05], np.float16)
    assert Sampler(SamplingOptions(), 4)(logits) == 0
    s = Sampler(SamplingOptions(repetition_penalty=2.0), 4, history=[0])
    assert s(logits) == 1  # 2.0 / 2 < 1.9
    s2 = Sampler(SamplingOptions(repetition_penalty=2.0), 4, history=[0, 1, 2])
    assert s2(logits) == 0  # 1.0 > 0.95 > -1.05 > -2.0
    s3 = Sampler(SamplingOptions(repetition_penalty=2.0), 4)
    negative = np.array([-3.0, -3.0, -1.0, -0.9])
    assert s3(negative) == 3
    s3.observe(3)
    assert s3(negative) == 2  # -0.9 * 2 = -1.8 < -1.0


def test_sampling_follows_the_softmax_and_is_reproducible():
    logits = np.log(np.array([0.5, 0.25, 0.15, 0.1]))
    draws = [Sampler(SamplingOptions(temperature=1.0, seed=7), 4) for _ in range(2)]
    a = [draws[0](logits) for _ in range(20000)]
    b = [draws[1](logits) for _ in range(20000)]
    assert a == b
    freq = np.bincount(a, minlength=4) / len(a)
    np.testing.assert_allclose(freq, [0.5, 0.25, 0.15, 0.1], atol=0.015)
    c = [Sampler(SamplingOptions(temperature=1.0, seed=8), 4)(logits) for _ in range(50)]
    assert c != a[:50]


def test_temperature_top_k_and_top_p_restrict_the_candidates():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    s = Sampler(SamplingOptions(temperature=1.0, top_k=2, seed=0), 4)
    got = np.bincount([s(logits) for _ in range(8000)], minlength=4) / 8000
    np.testing.assert_allclose(got, [0.625, 0.375, 0, 0], atol=0.02)
    s = Sampler(SamplingOptions(temperature=1.0, top_p=0.75, seed=0), 4)
    got = np.bincount([s(logits) for _ in range(8000)], minlength=4) / 8000
    np.testing.assert_allclose(got, [0.625, 0.375, 0, 0], atol=0.02)
    cold = Sampler(SamplingOptions(temperature=0.05, seed=0), 4)
    assert {cold(logits) for _ in range(200)} == {0}


def test_top_p_over_a_large_vocabulary_measures_the_whole_distribution():
    rng = np.random.default_rng(3)
    vocab = 5000
    logits = rng.standard_normal(vocab) * 0.1  # flat: the nucleus is far larger than 256
    logits[:3] = [9.0, 8.5, 8.0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    for top_p in (0.5, 0.99):
        keep = int(np.searchsorted(np.cumsum(probs[order]), top_p)) + 1
        allowed = set(order[:keep].tolist())
        s = Sampler(SamplingOptions(temperature=1.0, top_p=top_p, seed=1), vocab)
        seen = {s(logits) for _ in range(3000)}
        assert seen <= allowed
        if keep > 256:
            assert len(seen) > 256  # the first guess of 256 was not enough and was widened


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=-0.1), "temperature must be >= 0"),
        (dict(temperature=float("nan")), "temperature must be a finite number"),
        (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
        (dict(top_k=-1), "top_k must be an integer >= 0"),
        (dict(top_k=2.5), "top_k must be an integer >= 0"),
        (dict(repetition_penalty=0), "repetition_penalty must be > 0"),
        (dict(seed=-3), "seed must be an integer >= 0"),
    ],
)
def test_invalid_sampling_values(kwargs, message):
    with pytest.raises(InputError, match=message):
        SamplingOptions(**kwargs)


# ---------------------------------------------------------------- stopping


def test_stop_options_and_stop_string_search():
    opts = StopOptions.build(10, [5], "###", default_ids=[2])
    assert opts.stop_token_ids == {2, 5} and opts.stop_strings == ("###",)
    assert find_stop("abc ### d", ("###", "c "), start=0) == 2
    assert find_stop("ab##", ("###",), start=3) == -1
    assert find_stop("ab###", ("###",), start=4) == 2  # completed across the boundary
    assert partial_stop_len("hello ##", ("###",)) == 2
    assert partial_stop_len("hello", ("###", "lo!")) == 2
    for bad, msg in ((-1, "max_new_tokens must be"), (1.5, "max_new_tokens must be")):
        with pytest.raises(InputError, match=msg):
            StopOptions.build(bad, None, None)
    with pytest.raises(InputError, match="stop strings must be non-empty"):
        StopOptions.build(4, None, [""])
    with pytest.raises(InputError, match="stop_token_ids must hold token ids"):
        StopOptions.build(4, [-2], None)


# ---------------------------------------------------------------- streaming


@pytest.fixture(scope="module")
def tokenizers_(tmp_path_factory):
    hf_dir = tmp_path_factory.mktemp("hf")
    make_hf_tokenizer(hf_dir)
    return [
        load_tokenizer(hf_dir / "tokenizer.json"),
        load_tokenizer(make_sentencepiece(tmp_path_factory.mktemp("sp"))),
    ]


def test_stream_never_splits_a_character(tokenizers_):
    text = "naïve café: 日本語 😀🚀 done. straße ✨"
    for tok in tokenizers_:
        ids = tok.encode(text, add_bos=False)
        dec = IncrementalDecoder(tok.decode)
        pieces = [dec.push(t) for t in ids] + [dec.flush()]
        assert "".join(pieces) == tok.decode(ids) == text
        assert all("\ufffd" not in p for p in pieces)
        # a multi-byte character made of several tokens was held back at least once
        assert sum(1 for p in pieces if p == "") > 0


def test_text_stream_holds_back_and_cuts_at_a_stop_string(tokenizers_):
    tok = tokenizers_[0]
    ids = tok.encode("the quick brown fox jumps over the lazy dog.", add_bos=False)
    stream = TextStream(tok.decode, ("fox j",))
    pieces = []
    for t in ids:
        pieces.append(stream.push(t))
        if stream.stopped:
            break
    pieces.append(stream.finish())
    assert stream.stopped
    assert "".join(pieces) == stream.text == "the quick brown "
    free = TextStream(tok.decode)
    assert "".join([free.push(t) for t in ids] + [free.finish()]) == tok.decode(ids)


# ---------------------------------------------------------------- lookahead


def test_lookahead_options_are_checked_against_input_len():
    assert rows_needed(5, 4, 4) == 33
    assert resolve_options(64) == LookaheadOptions(5, 4, 4)
    fitted = resolve_options(32)  # defaults shrink only when none was given
    assert fitted.rows_needed <= 32 and (fitted.ngram, fitted.window) == (5, 4)
    with pytest.raises(
        InputError,
        match=r"needs 1 \+ \(window \+ branches\) \* \(ngram - 1\) = 33 input rows, "
        r"but method 'forward' takes 32",
    ):
        resolve_options(32, ngram=5, window=4, branches=4)
    with pytest.raises(InputError, match="ngram must be an integer >= 2"):
        resolve_options(64, ngram=1)
    with pytest.raises(InputError, match="lookahead needs at least 3 input rows"):
        resolve_options(2)


def test_ngram_pool_keeps_the_most_recent_per_key():
    pool = NGramPool(3, per_key=2)
    pool.add_text([1, 2, 3, 1, 2, 4, 1, 5, 6])
    assert pool.candidates(1, 4) == [(5, 6), (2, 4)]
    pool.add([1, 2, 4])
    assert pool.candidates(1, 1) == [(2, 4)]
    assert pool.candidates(9, 4) == []


def test_layout_rows_see_a_contiguous_history_ending_at_their_depth():
    opts = LookaheadOptions(ngram=4, window=3, branches=2)
    builder = LayoutBuilder(opts, n_rows=rows_needed(4, 3, 2) + 2)  # two padding rows
    levels = [np.array([10, 11, 12]), np.array([20, 21, 22]), np.array([30, 31, 32])]
    cands = [(40, 41, 42), (50, 51, 52)]
    layout = builder.build(7, levels, cands)
    assert layout.tokens[0] == 7 and layout.tokens[layout.grid_rows[2, 1]] == 31
    assert layout.tokens[layout.cand_rows[1, 2]] == 52
    used = 1 + 3 * 3 + 2 * 3
    for row in range(used):
        seen = np.flatnonzero(layout.allowed[row])
        # a row sees one token at each position q .. q+depth: a proper sequence
        assert sorted(layout.depth[seen].tolist()) == list(range(layout.depth[row] + 1))
    assert layout.depth[layout.grid_rows[2, 2]] == 1 + 2 + 2 == builder.max_depth()
    for row in range(used, builder.n_rows):
        assert np.flatnonzero(layout.allowed[row]).tolist() == [row]
    with pytest.raises(InputError, match="needs 16 rows, the method takes 15"):
        LayoutBuilder(opts, n_rows=15).build(7, levels, cands)


def test_grid_harvests_columns_as_ngrams_once_full():
    opts = LookaheadOptions(ngram=3, window=2, branches=1)
    grid = LookaheadGrid(opts, [5, 6, 7])
    assert len(grid.levels) == 1 and set(grid.levels[0].tolist()) <= {5, 6, 7}
    pool = NGramPool(3, per_key=4)
    first = grid.levels[0].copy()
    grid.advance(np.array([1, 2]), pool)  # warm-up: a second level, no n-grams yet
    assert len(pool) == 0 and len(grid.levels) == 2
    grid.advance(np.array([3, 4]), pool)
    assert pool.candidates(int(first[0]), 4)[0] == (1, 3)
    assert pool.candidates(int(first[1]), 4)[0] == (2, 4)
    assert [lv.tolist() for lv in grid.levels] == [[1, 2], [3, 4]]


def test_verify_accepts_the_agreeing_prefix_and_one_more_token():
    vocab = 10

    def logits_for(token):
        x = np.zeros(vocab)
        x[token] = 1.0
        return x

    # row 0 predicts 3; candidates 0 and 1 both hold 3 (same context, same logits: 4),
    # only candidate 1 continues with 4, then its row predicts 9 where it guessed 5
    cands = [(3, 8, 8), (3, 4, 5), (2, 2, 2)]
    cand_rows = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    rows = {0: 3, 1: 4, 4: 4, 5: 9}
    chosen, kv = verify(lambda r: logits_for(rows[r]), cands, cand_rows, lambda x: int(np.argmax(x)))
    assert chosen == [3, 4, 9] and kv == [0, 1, 5]
    full = [(3, 4, 5)]
    rows = {0: 3, 4: 4, 5: 5, 6: 6}
    chosen, kv = verify(lambda r: logits_for(rows[r]), full, cand_rows[1:2], lambda x: int(np.argmax(x)))
    assert chosen == [3, 4, 5, 6] and kv == [0, 4, 5, 6]  # all accepted plus the bonus token
    chosen, kv = verify(lambda r: logits_for(1), cands, cand_rows, lambda x: int(np.argmax(x)))
    assert chosen == [1] and kv == [0]
