"""A1111's infotext, written and read back by its documented rules."""

from __future__ import annotations

import pytest

from medialab_tui.interop.infotext import (
    Unquoted,
    format_infotext,
    parse_hashes,
    parse_infotext,
    parse_lora_hashes,
    quote,
)

# Written by A1111 1.10 (an SDXL txt2img with a LoRA and hires fix).
A1111 = """masterpiece, 1girl, (red scarf:1.2), <lora:scarf_v2:0.8>
snowy street at night
Negative prompt: lowres, bad hands,
blurry
Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567890, \
Size: 832x1216, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Denoising strength: 0.35, \
Hires upscale: 1.5, Hires steps: 12, Hires upscaler: 4x-UltraSharp, \
Lora hashes: "scarf_v2: 4c2a9b1e7f00", Version: v1.10.1"""


def test_an_a1111_infotext_reads_as_a1111_reads_it() -> None:
    info = parse_infotext(A1111)
    assert info.prompt == (
        "masterpiece, 1girl, (red scarf:1.2), <lora:scarf_v2:0.8>\nsnowy street at night"
    )
    assert info.negative == "lowres, bad hands,\nblurry"
    assert info.params["Steps"] == "28"
    assert info.params["Schedule type"] == "Karras"
    assert info.params["Size-1"] == "832" and info.params["Size-2"] == "1216"
    assert info.params["Hires upscaler"] == "4x-UltraSharp"
    assert parse_lora_hashes(info.params["Lora hashes"]) == {"scarf_v2": "4c2a9b1e7f00"}
    assert info.params["Version"] == "v1.10.1"


def test_a_last_line_with_fewer_than_three_pairs_is_prompt() -> None:
    info = parse_infotext("a cat\nstyle: oil, light: soft")
    assert info.prompt == "a cat\nstyle: oil, light: soft" and info.params == {}


PROMPTS = [
    ("a cat, on a mat: sleeping", "dog, blurry"),
    ('the word "hello", said twice', 'no "quotes": none'),
    ("line one\nline two, with a comma\nline three: colon", "neg one\nneg two"),
    ("富士山と桜, 夕焼け: 美しい", "低品質, ぼやけ"),
    ("Ünïcödé — em dash, ‘quotes’ and emoji 🐈", ""),
    ("back\\slash and tab\there", "x"),
]


@pytest.mark.parametrize(("prompt", "negative"), PROMPTS)
def test_what_is_written_reads_back(prompt: str, negative: str) -> None:
    hashes = '{"model": "31e35c80fc", "lora:my, lora": "4c2a9b1e7f00"}'
    settings = [
        ("Steps", 20),
        ("Sampler", "Euler a"),
        ("CFG scale", 7.0),
        ("Seed", 42),
        ("Size", "512x768"),
        ("Model hash", "31e35c80fc"),
        ("Model", 'odd, name: with "quotes"'),
        ("Hires upscaler", "line\nbreak"),
        ("Lora hashes", "my, lora: 4c2a9b1e7f00"),
        ("Hashes", hashes),
        ("Version", "medialab 0.1.0"),
    ]
    text = format_infotext(prompt, negative, settings)
    assert text.splitlines()[-1].startswith("Steps: ")
    info = parse_infotext(text)
    assert info.prompt == prompt and info.negative == negative
    for key, value in settings:
        assert info.params[key] == str(value), key
    assert parse_hashes(info.params["Hashes"]) == {
        "model": "31e35c80fc",
        "lora:my, lora": "4c2a9b1e7f00",
    }


def test_quoting_follows_a1111() -> None:
    assert quote("Euler a") == "Euler a"
    assert quote("a, b") == '"a, b"'
    assert quote("k: v") == '"k: v"'
    assert quote("é\nx") == '"é\\nx"'


def test_civitais_hashes_object_is_written_bare_and_read_back() -> None:
    hashes = Unquoted('{"model": "31e35c80fc", "lora:ink, v2": "4c2a9b1e7f"}')
    text = format_infotext(
        "p", "", [("Steps", 4), ("Seed", 1), ("Version", "x"), ("Hashes", hashes)]
    )
    assert text.endswith(', Hashes: {"model": "31e35c80fc", "lora:ink, v2": "4c2a9b1e7f"}')
    info = parse_infotext(text)
    assert parse_hashes(info.params["Hashes"]) == {
        "model": "31e35c80fc",
        "lora:ink, v2": "4c2a9b1e7f",
    }
    assert info.params["Version"] == "x" and "lora" not in " ".join(info.params)
