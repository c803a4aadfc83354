"""Frame-wise binary video tokens and bitwise video generation: per-frame equality with the image
tokenizer, the loss by hand, seeded sampling to clips, and the errors."""

from __future__ import annotations

import pytest
import torch

from argen import paradigms
from argen.paradigms.bitwise import BitwiseConfig, BitwiseLlama, to_groups
from argen.paradigms.registry import default_for
from argen.sampling.config import SamplingConfig
from argen.tokenizers.binary import BinaryAutoencoder, BinaryConfig
from argen.tokenizers.binary_frames import FrameBinary, FrameBinaryConfig, VideoBitLayout
from tests.test_binary import TINY

FRAMES = 3


def tiny_frames() -> FrameBinary:
    torch.manual_seed(0)
    return FrameBinary(FrameBinaryConfig(**TINY, bits=6, frames=FRAMES)).eval()


def tiny_video_generator() -> BitwiseLlama:
    torch.manual_seed(0)
    sizes = paradigms.get("bitwise_video").sizes(VideoBitLayout(FRAMES, 2, 2, 6))
    config = BitwiseConfig(vocab_size=12, num_classes=4, dim=32, n_layer=2, n_head=2, **sizes)
    model = BitwiseLlama(config).eval()
    for p in model.parameters():  # weights that give the head something to say
        torch.nn.init.normal_(p, std=0.3)
    return model


def test_every_frame_is_the_image_tokenizers():
    video = tiny_frames()
    image = BinaryAutoencoder(BinaryConfig(**TINY, bits=6)).eval()
    image.load_state_dict(video.state_dict())
    clips = torch.rand(2, FRAMES, 3, 16, 16) * 2 - 1
    bits = video.encode(clips)
    assert bits.shape == (2, FRAMES, 4, 4, 6) and video.layout == VideoBitLayout(FRAMES, 4, 4, 6)
    assert torch.equal(bits[:, 1], image.encode(clips[:, 1]))
    torch.testing.assert_close(video.decode(bits)[:, 2], image.decode(bits[:, 2]))
    with pytest.raises(ValueError, match=f"expected clips \\(B, {FRAMES}, C, H, W\\)"):
        video.encode(clips[:, :2])
    with pytest.raises(ValueError, match="frames must lie in"):
        video.latent_frames(FRAMES + 1)


def test_loss_is_the_cross_entropy_of_every_bit_of_every_frame():
    model, paradigm = tiny_video_generator(), paradigms.get("bitwise_video")
    assert model.config.rope == "3d" and model.config.num_tokens == FRAMES * 4
    bits = torch.randint(0, 2, (2, FRAMES, 2, 2, 6))
    labels = torch.tensor([0, 3])
    loss, _ = paradigm.loss(model, None, bits, labels)
    ids = to_groups(bits.reshape(2, -1, 6), 1)  # (B, T*h*w, 6), frames then rows then columns
    logits = model(ids, labels).view(2, FRAMES * 4, 6, 2)
    by_hand = -logits.log_softmax(-1).gather(-1, ids[..., None]).mean()
    torch.testing.assert_close(loss, by_hand)


def test_sampling_gives_seeded_clips():
    model, paradigm = tiny_video_generator(), paradigms.get("bitwise_video")
    tokenizer = FrameBinary(FrameBinaryConfig(**{**TINY, "resolution": 8}, bits=6, frames=FRAMES)).eval()
    config = SamplingConfig(temperature=1.0, cfg_scale=2.0)

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return paradigm.sample(
            model, tokenizer, torch.tensor([1, 2]), config, generator, paradigms.SamplingExtras()
        )

    bits = draw(0)
    assert torch.equal(bits, draw(0)) and not torch.equal(bits, draw(1))
    clips, valid = paradigm.decode(tokenizer, bits)
    assert clips.shape == (2, FRAMES, 3, 8, 8) and valid.all()


def test_paradigm_is_the_default_for_binary_clips_and_checks_its_tokenizer():
    layout = VideoBitLayout(FRAMES, 2, 2, 6)
    assert default_for("generator", layout).name == "bitwise_video"
    assert paradigms.inferred(tiny_video_generator(), layout).name == "bitwise_video"
    with pytest.raises(ValueError, match="needs a frame-wise binary tokenizer"):
        paradigms.get("bitwise_video").require_serves(
            BinaryAutoencoder(BinaryConfig(**TINY, bits=6)).layout, "runs/bsq"
        )
    with pytest.raises(Exception, match="frames 3"):
        paradigms.get("bitwise_video").check_pair(
            tiny_video_generator(), VideoBitLayout(2, 2, 2, 6), "g", "t"
        )
