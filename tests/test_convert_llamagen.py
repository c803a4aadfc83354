"""LlamaGen's official layout (hand-built here from argen models): key mapping, shape
inference, containers, condition RoPE, and the conversion CLI."""

import numpy as np
import pytest
import torch

import argen
from argen import models, tokenizers
from argen.checkpoint import CheckpointError
from argen.cli import sample as sample_cli
from argen.convert import (
    gpt_from_llamagen,
    gpt_to_llamagen,
    load_generator,
    load_official_state,
    load_tokenizer,
    vq_from_llamagen,
)
from argen.convert.__main__ import main as convert
from argen.models.llama import Llama, LlamaConfig
from argen.models.rope import rope_2d
from argen.tokenizers.vq import VQConfig, VQModel


def official_gpt_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, grid_size=(4, 4), num_classes=7, dim=768, n_layer=2, n_head=12)
    model = Llama(config)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    return gpt_to_llamagen(model)


def test_gpt_layout_round_trip_is_lossless():
    state = official_gpt_state()
    assert "tok_embeddings.weight" in state and "cls_embedding.embedding_table.weight" in state
    assert "layers.1.attention.wqkv.weight" in state and "layers.0.feed_forward.w3.weight" in state
    model = gpt_from_llamagen(state, model="GPT-B", image_size=64)
    assert model.config.rope_condition == "zero" and model.config.num_classes == 7
    assert model.config.grid_size == (4, 4) and model.config.n_head == 12
    back = gpt_to_llamagen(model)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_gpt_size_is_inferred_or_asked_for():
    state = official_gpt_state()
    with pytest.raises(CheckpointError, match="pass --model"):
        gpt_from_llamagen(state, image_size=64)  # 2 layers of width 768 is no LlamaGen size


def test_condition_position_rope_is_zero_as_in_llamagen():
    zero = rope_2d(4, 4, 16, 10000.0, prefix_len=1, zero_prefix=True)
    identity = rope_2d(4, 4, 16, 10000.0, prefix_len=1)
    assert torch.equal(zero[0], torch.zeros(8, 2))
    assert torch.equal(identity[0, :, 0], torch.ones(8)) and torch.equal(zero[1:], identity[1:])
    state = official_gpt_state()
    a = gpt_from_llamagen(state, model="GPT-B", image_size=64)
    b = gpt_from_llamagen(state, model="GPT-B", image_size=64)
    b.config.rope_condition = "identity"
    b.rope = rope_2d(4, 4, 64, 10000.0, 1)
    tokens, labels = torch.randint(0, 64, (1, 16)), torch.tensor([2])
    assert not torch.allclose(a(tokens, labels)[:, 1:], b(tokens, labels)[:, 1:])


def test_unknown_and_missing_keys_are_listed():
    state = official_gpt_state()
    state["layers.0.attention.bias"] = torch.zeros(3)
    del state["norm.weight"]
    with pytest.raises(
        CheckpointError, match=r"unknown keys \['layers.0.attention.bias'\].*missing keys \['norm.weight'\]"
    ):
        gpt_from_llamagen(state, model="GPT-B", image_size=64)


def test_vq_shapes_are_inferred_from_the_official_keys():
    torch.manual_seed(0)
    config = VQConfig(
        resolution=32,
        base_channels=32,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        z_channels=16,
        codebook_size=50,
        codebook_dim=8,
    )
    vq = VQModel(config).eval()
    state = {**vq.state_dict(), "quantize.codebook_used": torch.zeros(65536)}
    assert "encoder.conv_blocks.2.attn.0.q.weight" in state  # LlamaGen's names, as is
    assert "encoder.conv_blocks.0.downsample.conv.weight" in state
    converted = vq_from_llamagen(state, image_size=32)
    assert converted.config == config
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(converted.encode(x), vq.encode(x))


@pytest.mark.parametrize("container", ["model", "module", "state_dict", None])
def test_containers_and_cli(tmp_path, container):
    state = official_gpt_state()
    torch.save(state if container is None else {container: state, "steps": 3}, tmp_path / "c2i.pt")
    assert load_official_state(tmp_path / "c2i.pt").keys() == state.keys()
    code = convert(
        [
            "llamagen-gpt",
            str(tmp_path / "c2i.pt"),
            str(tmp_path / "out"),
            "--model",
            "GPT-B",
            "--image-size",
            "64",
        ]
    )
    assert code == 0 and models.load(tmp_path / "out").config.rope_condition == "zero"


def test_vq_cli_and_bad_files(tmp_path, capsys):
    vq = VQModel(
        VQConfig(
            resolution=32,
            base_channels=32,
            channel_mult=(1, 2),
            num_res_blocks=1,
            z_channels=16,
            codebook_size=50,
            codebook_dim=8,
        )
    )
    torch.save({"model": vq.state_dict()}, tmp_path / "vq.pt")
    assert convert(["llamagen-vq", str(tmp_path / "vq.pt"), str(tmp_path / "vq"), "--image-size", "32"]) == 0
    assert tokenizers.load(tmp_path / "vq").layout.height == 16
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert convert(["llamagen-vq", str(tmp_path / "junk.pt"), str(tmp_path / "x")]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def official_t2i_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        grid_size=(4, 4),
        condition="text",
        caption_len=10,
        caption_dim=16,
        dim=768,
        n_layer=2,
        n_head=12,
        rope_condition="zero",
    )
    model = Llama(config)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    return gpt_to_llamagen(model)


def test_t2i_layout_round_trip_and_cli(tmp_path):
    state = official_t2i_state()
    assert state["cls_embedding.uncond_embedding"].shape == (10, 16)
    assert {"cls_embedding.cap_proj.fc1.weight", "cls_embedding.cap_proj.fc2.weight"} <= state.keys()
    assert not any(k.startswith(("caption_emb", "class_emb")) for k in state)
    model = gpt_from_llamagen(state, model="GPT-B", image_size=64)
    c = model.config
    assert (c.condition, c.caption_len, c.caption_dim, c.rope_condition) == ("text", 10, 16, "zero")
    assert c.text_encoder == "google/flan-t5-xl" and model.prefix_len == 10
    back = gpt_to_llamagen(model)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    torch.save(state, tmp_path / "t2i.pt")  # FSDP-trained files are bare
    args = ["llamagen-gpt", str(tmp_path / "t2i.pt"), str(tmp_path / "out"), "--model", "GPT-B"]
    assert convert([*args, "--image-size", "64", "--text-encoder", "minilm"]) == 0
    loaded = models.load(tmp_path / "out")
    assert loaded.config.text_encoder == "minilm" and loaded.config.caption_len == 10
    assert torch.equal(loaded.caption_emb.null_caption, state["cls_embedding.uncond_embedding"])


def test_t2i_missing_keys_are_listed():
    state = official_t2i_state()
    del state["cls_embedding.cap_proj.fc2.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \['caption_emb.cap_proj.fc2.weight'\]"):
        gpt_from_llamagen(state, model="GPT-B", image_size=64)
    del state["cls_embedding.uncond_embedding"]
    with pytest.raises(CheckpointError, match="no cls_embedding"):
        gpt_from_llamagen(state, model="GPT-B", image_size=64)


def test_official_files_load_directly_and_sample(tmp_path):
    torch.save({"model": official_gpt_state()}, tmp_path / "c2i_B_128.pt")
    assert load_generator(tmp_path / "c2i_B_128.pt").config.grid_size == (8, 8)  # 128 px from the name
    assert load_generator(tmp_path / "c2i_B_128.pt", image_size=64).config.grid_size == (4, 4)
    torch.manual_seed(0)
    vq = VQModel(
        VQConfig(
            resolution=64,
            base_channels=32,
            channel_mult=(1, 1, 1, 1, 1),  # stride 16, as VQ-16
            num_res_blocks=1,
            z_channels=8,
            codebook_size=64,
            codebook_dim=8,
        )
    )
    torch.save({"model": vq.state_dict()}, tmp_path / "vq_ds16_c2i.pt")
    assert load_tokenizer(tmp_path / "vq_ds16_c2i.pt", image_size=64).layout.height == 4
    # argen.load tells them apart without being told the role
    assert isinstance(argen.load(tmp_path / "vq_ds16_c2i.pt", image_size=64), VQModel)
    assert isinstance(argen.load(tmp_path / "c2i_B_128.pt"), Llama)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a checkpoint this version reads"):
        argen.load(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="does not exist"):
        argen.load(tmp_path / "missing.pt")
    out = tmp_path / "samples"
    args = ["--ckpt", str(tmp_path / "c2i_B_128.pt"), "--tokenizer", str(tmp_path / "vq_ds16_c2i.pt")]
    args += ["--image-size", "64", "--classes", "1,2", "--num-samples", "2", "--out", str(out)]
    assert sample_cli.main(args) == 0
    assert np.load(out / "samples.npz")["arr_0"].shape == (2, 64, 64, 3)
