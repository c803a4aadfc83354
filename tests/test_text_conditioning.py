"""Text conditioning: caption prefix and masks, null caption guidance, caption dropout, the
bundled MiniLM encoder, prompts, caption datasets and precomputed caption features."""

import json
import logging

import pytest
import torch

from argen.data import CaptionFolderDataset, build_dataset, captions_of
from argen.data.images import DatasetError
from argen.data.token_cache import cache_matches
from argen.models.caption import Caption
from argen.sampling import SamplingConfig, guide, sample_next_token
from argen.text import (
    PromptError,
    TextEncoder,
    TextFeatures,
    build_text_features,
    check_prompts,
    read_prompts_file,
    text_feature_key,
    warn_truncated,
)
from tests.test_llama import tiny_llama


def text_llama(**kw):
    return tiny_llama(condition="text", caption_len=6, caption_dim=8, **kw)


def captions(lengths=(2, 6, 4), seed=0) -> Caption:
    """Random left-padded captions with the given numbers of real tokens."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.stack([torch.arange(6) >= 6 - n for n in lengths])
    return Caption(torch.randn(len(lengths), 6, 8, generator=g) * mask[..., None], mask)


@pytest.mark.parametrize("rope_condition", ["identity", "zero"])
def test_padding_changes_nothing(rope_condition):
    model, caption = text_llama(rope_condition=rope_condition), captions()
    tokens = torch.randint(0, 50, (3, 12))
    noisy = Caption(caption.features + (~caption.mask)[..., None] * 5 * torch.randn(3, 6, 8), caption.mask)
    torch.testing.assert_close(model(tokens, noisy), model(tokens, caption), atol=0, rtol=0)
    fewer = Caption(caption.features, caption.mask & (torch.arange(6) >= 3))  # hide 3 of row 1's tokens
    a, b = model(tokens, fewer), model(tokens, caption)
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


def test_text_cached_decoding_equals_full_forward():
    model, caption = text_llama(n_kv_head=2), captions()
    tokens = torch.randint(0, 50, (3, 12))
    full = model(tokens, caption)
    x = torch.cat([model.embed_condition(caption), model.embed_tokens(tokens[:, :-1])], dim=1)
    model.setup_cache(caption)
    steps = [model.forward_cached(x[:, :6], torch.arange(6))]
    steps += [model.forward_cached(x[:, i : i + 1], torch.tensor([i])) for i in range(6, 17)]
    model.clear_cache()
    torch.testing.assert_close(torch.cat(steps, dim=1)[:, 5:], full, atol=1e-5, rtol=1e-5)


def test_guidance_uses_the_null_caption():
    model, caption = text_llama(), captions()
    both = model.with_null(caption)
    assert len(both) == 6 and torch.equal(both.mask[3:], caption.mask)
    assert torch.equal(both.features[3:], model.caption_emb.null_caption.expand(3, -1, -1))
    # greedy guided sampling equals a hand-written loop over full forwards with the null caption
    out = sample_next_token(model, caption, SamplingConfig(cfg_scale=3.0, temperature=0))
    null = Caption(model.caption_emb.null_caption.expand(3, -1, -1), caption.mask)
    ref = torch.zeros(3, 12, dtype=torch.long)
    for i in range(12):
        logits = torch.cat([model(ref, caption)[:, i], model(ref, null)[:, i]])
        ref[:, i] = guide(logits, 3.0).argmax(-1)
    assert torch.equal(out, ref)
    assert not torch.equal(out, sample_next_token(model, caption, SamplingConfig(temperature=0)))


def test_caption_dropout_replaces_captions_with_the_null_caption():
    model, caption = text_llama(class_dropout=1.0), captions()
    expected = model.caption_emb(model.caption_emb.null(caption))
    model.train()
    torch.testing.assert_close(model.embed_condition(caption), expected)
    model.eval()
    assert not torch.allclose(model.embed_condition(caption), expected)


def test_captions_must_be_left_padded_and_fit_the_model():
    features, mask = torch.randn(2, 6, 8), torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]).bool()
    with pytest.raises(ValueError, match="padded on the left"):
        Caption(features, mask)
    moved = Caption.from_right_padded(features, mask)
    assert moved.mask[0].tolist() == [False] * 4 + [True] * 2
    assert torch.equal(moved.features[0, 4:], features[0, :2]) and torch.equal(moved.features[1], features[1])
    with pytest.raises(ValueError, match="do not fit"):
        text_llama().embed_condition(Caption(torch.randn(1, 5, 8), torch.ones(1, 5, dtype=torch.bool)))


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder("minilm", max_length=12)


def test_minilm_encoder_features_and_masks(encoder, caplog):
    prompts = ["a handwritten digit seven", "seven", "a very long prompt " * 10]
    caption = encoder(prompts)
    assert caption.features.shape == (3, 12, 384) and caption.features.dtype == torch.float32
    assert encoder.dim == 384
    counts = encoder.token_counts(prompts)
    assert counts[:2] == [7, 3] and counts[2] > 12  # [CLS] ... [SEP]
    assert caption.mask.sum(1).tolist() == [7, 3, 12]
    assert torch.all(caption.features[~caption.mask] == 0)
    torch.testing.assert_close(encoder(prompts[:1]).features[0], caption.features[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(caption.features[0, -1], caption.features[1, -1])  # prompts differ
    with caplog.at_level(logging.WARNING):
        assert warn_truncated(prompts, counts, 12) == 1
    assert "truncated to 12" in caplog.text


def test_prompt_validation(tmp_path):
    assert check_prompts([" a cat ", "a dog"]) == ["a cat", "a dog"]
    with pytest.raises(PromptError, match="prompt 1 is empty"):
        check_prompts(["a cat", "   "])
    with pytest.raises(PromptError, match="not valid UTF-8"):
        check_prompts(["caf\udce9"])  # how Python passes undecodable argv bytes
    good = tmp_path / "ok.txt"
    good.write_text("a cat\n\n  a dog  \n", encoding="utf-8")
    assert read_prompts_file(good) == ["a cat", "a dog"]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a cat\ncaf\xe9\n")
    with pytest.raises(PromptError, match="line 2: not valid UTF-8"):
        read_prompts_file(bad)
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(PromptError, match="holds no prompts"):
        read_prompts_file(tmp_path / "blank.txt")


def save_image(path, value):
    from PIL import Image

    Image.new("RGB", (10, 10), (value, value, value)).save(path)


def test_caption_folders_and_template_captions(tmp_path):
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    for i in range(3):
        save_image(jsonl / f"{i}.png", 40 * i)
    lines = [{"file": "0.png", "caption": "a dark square"}, {"file": "1.png", "caption": "a grey square"}]
    lines += [{"file": "2.png", "caption": "a dark square"}, {"file": "missing.png", "caption": "gone"}]
    (jsonl / "captions.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    data = build_dataset(str(jsonl), 8)
    assert isinstance(data, CaptionFolderDataset) and len(data) == 3 and data.num_skipped == 1
    assert captions_of(data) == ["a dark square", "a grey square"]
    image, caption_id = data[1]
    assert image.shape == (3, 8, 8) and captions_of(data)[caption_id] == "a grey square"

    txt = tmp_path / "txt"
    txt.mkdir()
    save_image(txt / "a.png", 10)
    (txt / "a.txt").write_text("a black square\n")
    assert captions_of(build_dataset(str(txt), 8)) == ["a black square"]

    assert captions_of(build_dataset("digits", 8))[7] == "a handwritten digit seven"
    assert captions_of(build_dataset("digits", 8), "the number {}")[1] == "the number one"
    with pytest.raises(DatasetError, match="must contain"):
        captions_of(build_dataset("digits", 8), "no slot")
    (jsonl / "captions.jsonl").write_text('{"file": "0.png"}\n')
    with pytest.raises(DatasetError, match="line 1"):
        build_dataset(str(jsonl), 8)


def test_text_features_are_built_once_and_read_back(encoder, tmp_path):
    texts = ["a handwritten digit zero", "a handwritten digit one", "a photo of a cat"]
    key = text_feature_key("minilm", 12, texts)
    out = build_text_features(encoder, texts, tmp_path / "feats", key, shard_size=2)
    assert len(list(out.glob("shard-*.safetensors"))) == 2 and cache_matches(out, key)
    assert not cache_matches(out, text_feature_key("minilm", 12, texts[:2]))
    features = TextFeatures(out)
    assert len(features) == 3 and features.dim == 384 and features.meta["captions"] == texts
    direct = encoder(texts)
    got = features[torch.tensor([2, 0])]
    assert torch.equal(got.mask, direct.mask[[2, 0]])
    torch.testing.assert_close(got.features, direct.features[[2, 0]], atol=0.05, rtol=0.01)  # bfloat16


def test_t5_directories_load_their_encoder_only(tmp_path):
    """A local T5 directory (tiny random weights, MiniLM's tokenizer files) loads as T5's encoder."""
    import shutil

    from transformers import T5Config, T5EncoderModel

    from argen.text import resolve_text_encoder

    minilm = resolve_text_encoder("minilm")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(f"{minilm}/{name}", tmp_path / name)
    config = T5Config(vocab_size=30522, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4)
    T5EncoderModel(config).save_pretrained(tmp_path)
    encoder = TextEncoder(str(tmp_path), max_length=10)
    assert isinstance(encoder.model, T5EncoderModel) and encoder.dim == 16
    caption = encoder(["a cat", "a photo of a dog"])
    assert caption.features.shape == (2, 10, 16) and caption.mask[:, -1].all()


def test_missing_text_encoder_is_a_clear_error(tmp_path):
    from argen.text import TextEncoderError

    with pytest.raises(TextEncoderError, match="cannot load text encoder"):
        TextEncoder(str(tmp_path / "nowhere"))
