"""Tokenizers from bundle files, told apart by content; chat templates."""

from __future__ import annotations

import json
import shutil

import pytest

from generate_fixtures import CHATML_TEMPLATE, make_hf_tokenizer, make_sentencepiece, make_tiktoken
from staticllm.errors import BundleError, InputError
from staticllm.tokenizers import (
    LLAMA3_PATTERN,
    HFTokenizer,
    SentencePieceTokenizer,
    TiktokenTokenizer,
    llama3_special_tokens,
    load_tokenizer,
    render_chat_template,
)

TEXTS = ["hello world!", "the quick brown fox", "café déjà vu 日本語 😀", " leading and  double  spaces "]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return make_hf_tokenizer(tmp_path_factory.mktemp("hf")).parent


@pytest.fixture(scope="module")
def sp_path(tmp_path_factory):
    return make_sentencepiece(tmp_path_factory.mktemp("sp"))


@pytest.fixture(scope="module")
def tiktoken_file(tmp_path_factory):
    return make_tiktoken(tmp_path_factory.mktemp("tt"))


def test_hf_tokenizer_json_round_trips_and_matches_the_library(hf_dir):
    import tokenizers

    tok = load_tokenizer(hf_dir / "tokenizer.json", hf_dir / "tokenizer_config.json")
    lib = tokenizers.Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    assert isinstance(tok, HFTokenizer)
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids == lib.encode(text).ids  # add_bos_token is false in the config
        assert tok.decode(ids) == text
    assert tok.eos_ids == [lib.token_to_id("<|im_end|>")]
    assert tok.vocab_size == lib.get_vocab_size()


def test_kind_is_judged_by_content_not_by_file_name(hf_dir, sp_path, tiktoken_file, tmp_path):
    renamed = tmp_path / "tokenizer.model"
    shutil.copyfile(hf_dir / "tokenizer.json", renamed)
    assert isinstance(load_tokenizer(renamed), HFTokenizer)
    sp_as_json = tmp_path / "tokenizer.json"
    shutil.copyfile(sp_path, sp_as_json)
    assert isinstance(load_tokenizer(sp_as_json), SentencePieceTokenizer)
    assert isinstance(load_tokenizer(tiktoken_file[0]), TiktokenTokenizer)


def test_sentencepiece_adds_bos_and_decodes_byte_fallback(sp_path):
    import sentencepiece as spm

    tok = load_tokenizer(sp_path)
    sp = spm.SentencePieceProcessor(model_file=str(sp_path))
    assert isinstance(tok, SentencePieceTokenizer)
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids[0] == sp.bos_id() == tok.bos_id
        assert ids[1:] == sp.encode(text)
        # SentencePiece's default normaliser folds runs of spaces; other text round-trips
        expected = " ".join(text.split()) if "  " in text else text
        assert tok.decode(ids) == expected
    # characters absent from the vocabulary become <0xNN> byte pieces
    ids = tok.encode("😀", add_bos=False)
    assert any(sp.id_to_piece(i).startswith("<0x") for i in ids)
    assert tok.decode(ids) == "😀"
    assert tok.eos_ids == [sp.eos_id()]


def test_tiktoken_file_uses_llama3_pattern_and_special_tokens(tiktoken_file):
    import tiktoken

    path, ranks = tiktoken_file
    tok = load_tokenizer(path)
    assert isinstance(tok, TiktokenTokenizer)
    specials = llama3_special_tokens()
    assert len(specials) == 256 and len(set(specials)) == 256
    ref = tiktoken.Encoding(
        "ref",
        pat_str=LLAMA3_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={t: len(ranks) + i for i, t in enumerate(specials)},
    )
    n = len(ranks)
    assert tok.vocab_size == n + 256
    assert tok.bos_id == n + 0 == tok.token_to_id("<|begin_of_text|>")
    assert tok.token_to_id("<|eot_id|>") == n + 9
    assert tok.token_to_id("<|start_header_id|>") == n + 6
    assert set(tok.eos_ids) == {n + 1, n + 8, n + 9}
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids == [n] + ref.encode(text)
        assert tok.decode(ids) == text  # BOS is left out of the text


def test_llama3_default_chat_template(tiktoken_file):
    tok = load_tokenizer(tiktoken_file[0])
    text = tok.apply_chat_template([{"role": "user", "content": "Hi there "}])
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids = tok.encode(text, add_bos=False)
    n = tok.n_base
    assert ids[:2] == [n + 0, n + 6] and ids.count(n + 9) == 1


def test_chat_template_from_tokenizer_config(hf_dir):
    tok = load_tokenizer(hf_dir / "tokenizer.json", hf_dir / "tokenizer_config.json")
    text = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}])
    assert text == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(text, add_bos=False)
    assert ids[0] == tok.token_to_id("<|im_start|>")  # special tokens in the text are recognised
    assert tok.decode(ids) == "user\nWhat is 2+2?\nassistant\n"


def test_chat_template_list_form_and_raise_exception():
    config = {
        "chat_template": [
            {"name": "tool_use", "template": "x"},
            {"name": "default", "template": CHATML_TEMPLATE},
        ]
    }
    msgs = [{"role": "user", "content": "a"}]
    from staticllm.tokenizers import _pick_template

    assert _pick_template(config["chat_template"]) == CHATML_TEMPLATE
    bad = "{% if messages[0]['role'] != 'system' %}{{ raise_exception('system message first') }}{% endif %}"
    with pytest.raises(InputError, match="chat template: system message first"):
        render_chat_template(bad, msgs, {})
    rendered = render_chat_template(
        "{{ bos_token }}{{ messages | tojson }}", msgs, {"bos_token": {"content": "<s>"}}
    )
    assert rendered == '<s>[{"role": "user", "content": "a"}]'


def test_no_template_is_a_clear_error(sp_path):
    tok = load_tokenizer(sp_path)
    with pytest.raises(InputError, match="no chat template"):
        tok.apply_chat_template([{"role": "user", "content": "hi"}])


def test_unrecognised_or_broken_files(tmp_path):
    junk = tmp_path / "tokenizer.model"
    junk.write_bytes(b"\x00\x01garbage that is no tokenizer\xff")
    with pytest.raises(BundleError, match="not a Hugging Face tokenizer.json, a tiktoken BPE file"):
        load_tokenizer(junk)
    not_tok = tmp_path / "other.json"
    not_tok.write_text(json.dumps({"vocab": {}}))
    with pytest.raises(BundleError, match="JSON without a 'model' object"):
        load_tokenizer(not_tok)
    with pytest.raises(BundleError, match="cannot read tokenizer file"):
        load_tokenizer(tmp_path / "missing.json")
