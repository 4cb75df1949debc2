"""Quantization plans and their bad input: unknown modes, config files that
do not parse or name unknown keys (the error names the key and its line),
block or group sizes that do not tile a weight, and tied embeddings asked to
be two things at once. All of these fail before any conversion runs."""

from __future__ import annotations

import pytest

import staticllm
from llama_fixtures import make_hf_checkpoint, tiny_config
from staticllm.errors import ExportError
from staticllm.exporter.quantize import DEFAULT_GROUP_SIZE, QuantSpec, Weight, make_plan, resolve
from staticllm.exporter.quantize_config import load_plan, parse_layers


def _weight(name: str, shape=(64, 64), layer=None, roles=("body",)) -> Weight:
    return Weight(name, shape, layer, frozenset(roles))


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unknown_mode_names_the_choices(tmp_path):
    with pytest.raises(ExportError, match=r"unknown quantize mode 'int3'; choose one of none, int8, int4, "):
        staticllm.export(tmp_path / "o", hf_dir=tmp_path, quantize="int3", progress=False)
    with pytest.raises(ExportError, match=r"unknown embeddings mode 'int2'"):
        make_plan("int8", embeddings="int2")
    assert not (tmp_path / "o").exists()


def test_cli_rejects_unknown_mode(capsys):
    from staticllm.cli import main

    with pytest.raises(SystemExit):
        main(["export", "--hf-dir", "x", "--output", "y", "--quantize", "palettize3"])
    assert "invalid choice: 'palettize3'" in capsys.readouterr().err


def test_plan_precedence_default_then_roles_then_rules_in_order(tmp_path):
    path = _write(
        tmp_path,
        "q.yaml",
        "default: {mode: palettize4, group_size: 8}\n"
        "lm_head: int8\n"
        "rules:\n"
        "  - {layers: 0-3, mode: palettize6}\n"
        "  - {layers: [2], pattern: '*.wq.weight', mode: none}\n",
    )
    plan = load_plan(path)
    body = _weight("layers.2.attention.wq.weight", layer=2)
    assert plan.spec_for(body) == QuantSpec("none")
    assert plan.spec_for(_weight("layers.2.attention.wk.weight", layer=2)) == QuantSpec(
        "palettize6",
        group_size=DEFAULT_GROUP_SIZE,  # a rule without its own size takes the default
    )
    assert plan.spec_for(_weight("layers.7.attention.wk.weight", layer=7)) == QuantSpec(
        "palettize4", group_size=8
    )
    assert plan.spec_for(_weight("output.weight", roles=("lm_head",))) == QuantSpec("int8")
    # embeddings not chosen: int8 under a 4-bit default
    assert plan.spec_for(_weight("tok_embeddings.weight", roles=("embeddings",))).mode == "int8"


def test_a_4bit_body_keeps_int8_ends_unless_they_are_chosen(tmp_path):
    tied = _weight("tok_embeddings.weight", (320, 64), roles=("embeddings", "lm_head"))
    emb = _weight("tok_embeddings.weight", (320, 64), roles=("embeddings",))
    head = _weight("output.weight", (320, 64), roles=("lm_head",))
    body = _weight("layers.0.attention.wq.weight", layer=0)
    for mode in ("palettize4", "int4"):
        plan = make_plan(mode)
        assert [plan.spec_for(w).mode for w in (tied, emb, head, body)] == ["int8", "int8", "int8", mode]
    assert make_plan("palettize4").to_dict() == {
        "default": {"mode": "palettize4", "group_size": DEFAULT_GROUP_SIZE},
        "embeddings": {"mode": "int8"},
        "lm_head": {"mode": "int8"},
    }
    for mode in ("palettize6", "int8", "none"):  # other bodies: the ends follow the body
        plan = make_plan(mode)
        assert {plan.spec_for(w).mode for w in (tied, emb, head)} == {mode}
        assert set(plan.to_dict()) == {"default"}
    chosen = make_plan("palettize4", embeddings="palettize4")
    assert chosen.spec_for(tied).mode == chosen.spec_for(emb).mode == "palettize4"
    assert chosen.spec_for(head).mode == "int8"  # an untied head not chosen stays int8
    # a config file's 4-bit default brings the int8 ends with it
    path = _write(tmp_path, "q.yaml", "default: int4\n")
    assert load_plan(path, base=make_plan("int8")).spec_for(tied).mode == "int8"
    assert load_plan(path, base=make_plan("palettize6")).spec_for(head).mode == "int8"


def test_command_line_settings_are_the_base_the_file_refines(tmp_path):
    path = _write(tmp_path, "q.json", '{"rules": [{"pattern": "output.weight", "mode": "int8"}]}')
    plan = make_plan("int4", block_size=16, embeddings="none", config=path)
    assert plan.spec_for(_weight("layers.0.attention.wq.weight", layer=0)) == QuantSpec("int4", block_size=16)
    assert plan.spec_for(_weight("tok_embeddings.weight", roles=("embeddings",))) == QuantSpec("none")
    assert plan.spec_for(_weight("output.weight", roles=("lm_head",))) == QuantSpec("int8")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.yaml", "default: int8\nbogus: 1\n", r"a.yaml line 2: bogus: unknown key; the file takes"),
        (
            "b.yaml",
            "default: int8\nrules:\n  - layers: 0-1\n    mode: int3\n",
            r"b.yaml line 4: rules\[0\].mode: unknown mode 'int3'; choose one of",
        ),
        (
            "c.yaml",
            "rules:\n  - pattern: '*.wq.weight'\n    mode: int4\n    group_size: 8\n",
            r"c.yaml line 4: rules\[0\].group_size: group_size applies to palettize4/palettize6, not int4",
        ),
        (
            "d.yaml",
            "rules:\n  - mode: int8\n",
            r"d.yaml line 2: rules\[0\]: a rule needs 'pattern'/'patterns' or",
        ),
        (
            "e.yaml",
            "rules:\n  - layers: 3-1\n    mode: int8\n",
            r"e.yaml line 2: rules\[0\].layers: '3-1' is not",
        ),
        ("f.yaml", "default: [int8\n", r"f.yaml line 2: invalid YAML"),
        ("g.json", '{"default": "int8",\n "rules": [}\n', r"g.json line 2: invalid JSON"),
        (
            "h.json",
            '{"default": {"mode": "int4",\n "block_size": 0}}',
            r"h.json line 2: default.block_size: expected",
        ),
        ("i.yaml", "- int8\n", r"i.yaml line 1: \(top level\): expected a mapping"),
        ("j.yaml", "rules:\n  - layers: 1\n", r"j.yaml line 2: rules\[0\]: missing 'mode'"),
        (
            "k.yaml",
            "rules:\n  - layers: 1\n    mode: int8\n    pattrn: x\n",
            r"line 4: rules\[0\].pattrn: unknown key",
        ),
    ],
)
def test_bad_config_file_names_the_line_and_key(tmp_path, name, text, message):
    with pytest.raises(ExportError, match=message):
        load_plan(_write(tmp_path, name, text))


def test_missing_config_file(tmp_path):
    with pytest.raises(ExportError, match=r"quantize config file not found: .*nope.yaml"):
        make_plan("int8", config=tmp_path / "nope.yaml")


def test_layer_ranges():
    assert parse_layers("0-2,5") == {0, 1, 2, 5}
    assert parse_layers([7, "9-10"]) == {7, 9, 10}
    assert parse_layers(4) == {4}
    for bad in ("x", "2-", -1, True, ""):
        with pytest.raises(ValueError):
            parse_layers(bad)


def test_sizes_that_do_not_tile_a_weight_fail_before_conversion():
    weights = [_weight("layers.0.feed_forward.w2.weight", shape=(64, 128), layer=0)]
    with pytest.raises(ExportError, match=r"int4 block size 48 does not divide the 128 input channels of "):
        resolve(make_plan("int4", block_size=48), weights, "fp16")
    with pytest.raises(
        ExportError, match=r"group size 24 does not divide the 64 output channels of layers.0"
    ):
        resolve(make_plan("palettize4", group_size=24), weights, "fp16")
    with pytest.raises(ExportError, match=r"group_size must be a positive integer, got 0"):
        make_plan("palettize4", group_size=0)


def test_tied_embeddings_cannot_be_quantized_two_ways(tmp_path):
    ckpt = make_hf_checkpoint(tmp_path / "hf", tiny_config(tied_embeddings=True), with_tokenizer=False)
    with pytest.raises(
        ExportError, match=r"ties its LM head to its embeddings \(model.embed_tokens.weight is one"
    ):
        staticllm.export(
            tmp_path / "o",
            hf_dir=ckpt,
            max_context_len=64,
            input_len=8,
            quantize="palettize4",
            quantize_embeddings="int8",
            quantize_head="none",
            progress=False,
        )
    assert not (tmp_path / "o").exists()
    tied = _weight("tok_embeddings.weight", shape=(320, 64), roles=("embeddings", "lm_head"))
    assert make_plan("palettize4", lm_head="int8").spec_for(tied) == QuantSpec("int8")
