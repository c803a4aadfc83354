"""Video generation: frame-wise and causal video VQ, 3-D RoPE, frame-causal and next-frame
models, KV-cached video sampling, frame prediction, mp4 files, FVD and the CLI pipeline."""

import json

import numpy as np
import pytest
import torch

from argen import models, tokenizers
from argen.checkpoint import save_model
from argen.cli import sample as sample_cli
from argen.data import MovingDigitsDataset
from argen.data.video_io import read_frames, write_mp4
from argen.eval.classifier import Classifier, ClassifierConfig
from argen.eval.fid import FeaturesUnavailable
from argen.eval.fvd import ClipClassifierFeatures, I3DFeatures, frechet_from_features, frechet_video_distance
from argen.models.llama import Llama, LlamaConfig
from argen.models.next_frame import NextFrameLlama
from argen.models.rope import apply_rope, rope_3d
from argen.sampling import SamplingConfig, sample_next_token
from argen.sampling.next_frame import sample_next_frame
from argen.sampling.next_token import NextTokenOptions
from argen.tokenizers import (
    CausalVideoVQConfig,
    CausalVideoVQModel,
    FrameVQModel,
    VQConfig,
    VQModel,
)
from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train
from tests.conftest import TRAIN, gpt_recipe, t2i_recipe

TINY_VQ = dict(
    resolution=16, base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, z_channels=8, norm_groups=4
)


def clips(n: int = 2, frames: int = 5, resolution: int = 16) -> torch.Tensor:
    data = MovingDigitsDataset(resolution, frames)
    return torch.stack([data[i][0] for i in range(n)])  # (n, T, 3, R, R)


def video_llama(cls=Llama, frames: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=24, grid_size=(2, 3), frames=frames, rope="3d", num_classes=4, dim=48, n_layer=2, n_head=4
    )
    model = cls(config).eval()
    for p in model.parameters():  # break the zero-initialised output layer
        torch.nn.init.normal_(p, std=0.3)
    return model


def test_frame_vq_is_the_image_vq_per_frame(tmp_path):
    torch.manual_seed(0)
    vq = VQModel(VQConfig(**TINY_VQ, codebook_size=32, codebook_dim=4)).eval()
    video = FrameVQModel.from_vq(vq, frames=5).eval()
    x = clips()
    ids = video.encode(x)
    assert ids.shape == (2, 5, 4, 4) and video.layout.num_tokens == 80
    assert torch.equal(ids[:, 3], vq.encode(x[:, 3]))
    recon = video.decode(ids)
    assert recon.shape == x.shape
    torch.testing.assert_close(recon[:, 2], vq.decode(ids[:, 2]))
    save_model(video, tmp_path / "tok")
    loaded = tokenizers.load(tmp_path / "tok")
    assert isinstance(loaded, FrameVQModel) and torch.equal(loaded.encode(x), ids)
    with pytest.raises(ValueError, match="clips"):
        video.encode(x[:, :4])


def test_causal_video_vq_keeps_the_first_frame_separate_and_never_looks_ahead():
    torch.manual_seed(0)
    config = CausalVideoVQConfig(**TINY_VQ, frames=9, temporal_downsample=2, codebook_size=64, codebook_dim=4)
    model = CausalVideoVQModel(config).eval()
    x = clips(frames=9)
    recon, _ = model(x)
    ids = model.encode(x)
    assert recon.shape == x.shape and ids.shape == (2, 3, 4, 4)  # 1 + 8/4 latent frames
    assert model.layout.frames == 3 and model.latent_frames(5) == 2
    changed = x.clone()
    changed[:, 5:] = torch.rand_like(changed[:, 5:])
    assert torch.equal(model.encode(changed)[:, :2], ids[:, :2])  # latents 0, 1 see frames 0..4 only
    other = ids.clone()
    other[:, 2] = (other[:, 2] + 1) % 64
    torch.testing.assert_close(model.decode(other)[:, :5], model.decode(ids)[:, :5])  # causal decoder
    with pytest.raises(ValueError, match="1 \\+ a multiple of 4"):
        CausalVideoVQConfig(**TINY_VQ, frames=8)
    with pytest.raises(ValueError, match="whole latent frames"):
        model.latent_frames(4)


def test_rope_3d_rotates_by_frame_row_and_column():
    frames, height, width, head_dim = 3, 2, 4, 16  # 8 pairs: 2 for time, 3 per spatial axis
    table = rope_3d(frames, height, width, head_dim, 100.0, prefix_len=1)
    assert table.shape == (1 + 24, 8, 2)
    angles = torch.atan2(table[..., 1], table[..., 0])[1:].view(frames, height, width, 8)
    assert torch.allclose(table[0], torch.tensor([1.0, 0.0]).expand(8, 2))  # the prefix is not rotated
    assert torch.allclose(angles[2, 0, 0, :2], torch.tensor([2.0, 2.0 * 100**-0.5]), atol=1e-6)
    assert torch.allclose(angles[:, 1, 3, :2], angles[:, 0, 0, :2])  # time pairs ignore the place
    assert torch.allclose(angles[1, :, 2, 2:5], angles[0, :, 2, 2:5])  # row pairs ignore frame and column
    assert torch.allclose(angles[2, 1, :, 5:], angles[0, 0, :, 5:])  # column pairs ignore frame and row
    # attention scores depend only on the (frame, row, column) offset
    q, k = torch.randn(2, 1, 1, 1, head_dim).unbind(0)
    grid = table[1:].view(frames, height, width, 8, 2)

    def score(a, b):
        return (apply_rope(q, grid[a][None]) * apply_rope(k, grid[b][None])).sum()

    torch.testing.assert_close(score((1, 1, 2), (0, 0, 1)), score((2, 1, 3), (1, 0, 2)))


def test_video_models_are_frame_causal():
    token_model, frame_model = video_llama(Llama), video_llama(NextFrameLlama)
    ids = torch.randint(0, 24, (2, 18))
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 24  # frames 1 and 2
    cond = torch.tensor([0, 3])
    # token by token: every prediction up to the first token of frame 1 is unchanged
    torch.testing.assert_close(token_model(changed, cond)[:, :7], token_model(ids, cond)[:, :7])
    # next-frame: frames 0 and 1 are predicted from frames before them only
    torch.testing.assert_close(frame_model(changed, cond)[:, :12], frame_model(ids, cond)[:, :12])
    assert not torch.allclose(frame_model(changed, cond)[:, 12:], frame_model(ids, cond)[:, 12:])
    visible = frame_model.pattern.visible(1 + 18, "cpu")
    assert visible[1, 6] and visible[12, 1] and visible[7, 12] and not visible[1, 7] and not visible[6, 7]


def test_cached_video_sampling_equals_full_forward():
    token_model, frame_model = video_llama(Llama), video_llama(NextFrameLlama)
    cond = torch.tensor([0, 1, 2])
    greedy = SamplingConfig(temperature=0)
    cached = sample_next_token(token_model, cond, greedy)
    assert torch.equal(
        cached, sample_next_token(token_model, cond, greedy, None, NextTokenOptions(use_cache=False))
    )
    frames = sample_next_frame(frame_model, cond, greedy)
    assert frames.shape == (3, 18)
    assert torch.equal(
        frame_model(frames, cond).argmax(-1), frames
    )  # each frame: argmax given the earlier ones
    guided = SamplingConfig(cfg_scale=3.0, temperature=1.0)
    draws = [sample_next_frame(frame_model, cond, guided, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*draws)


@pytest.mark.parametrize("cls", [Llama, NextFrameLlama])
def test_frame_prediction_keeps_the_given_frames(cls):
    model = video_llama(cls)
    cond = torch.tensor([0, 1])
    given = torch.randint(0, 24, (2, 6))  # frame 0

    def next_token(model, cond, config, generator=None, given=None):
        return sample_next_token(model, cond, config, generator, NextTokenOptions(given=given))

    sampler = sample_next_frame if cls is NextFrameLlama else next_token
    config = SamplingConfig(cfg_scale=2.0)
    out = sampler(model, cond, config, torch.Generator().manual_seed(0), given=given)
    assert out.shape == (2, 18) and torch.equal(out[:, :6], given)
    with pytest.raises(ValueError, match="given tokens"):
        sampler(model, cond, config, given=torch.zeros(2, 18, dtype=torch.long))


def test_mp4_round_trip(tmp_path):
    video = (clips(1, frames=8)[0].permute(0, 2, 3, 1).add(1).mul(127.5)).round().to(torch.uint8).numpy()
    write_mp4(tmp_path / "a.mp4", video, fps=8)
    back = read_frames(tmp_path / "a.mp4")
    assert back.shape == video.shape and np.abs(back.astype(int) - video).mean() < 2
    with pytest.raises(ValueError, match="even"):
        write_mp4(tmp_path / "b.mp4", video[:, :15], fps=8)


def test_frechet_distance_is_zero_on_itself_and_grows_with_noise():
    torch.manual_seed(0)
    classifier = Classifier(ClassifierConfig(resolution=16, frames=5, channels=(8, 16), feature_dim=16))
    features = ClipClassifierFeatures(classifier, "random")
    real = ((clips(64) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    rng = np.random.default_rng(0)
    noisy = [np.clip(real + rng.normal(0, s, real.shape), 0, 255).astype(np.uint8) for s in (10, 40, 120)]
    same = frechet_video_distance(features, real, real)
    distances = [frechet_video_distance(features, real, n) for n in noisy]
    assert abs(same) < 1e-6 and 0 < distances[0] < distances[1] < distances[2]
    # the trace term against the symmetric form tr((S_a^1/2 S_b S_a^1/2)^1/2)
    a, b = torch.randn(300, 6, dtype=torch.float64), torch.randn(300, 6, dtype=torch.float64) * 2 + 1
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(ca)
    root = vecs @ torch.diag(vals.sqrt()) @ vecs.T
    inner = torch.linalg.eigvalsh(root @ cb @ root).clamp_min(0).sqrt().sum()
    expected = (a.mean(0) - b.mean(0)).square().sum() + ca.trace() + cb.trace() - 2 * inner
    assert frechet_from_features(a, b) == pytest.approx(float(expected), rel=1e-9)


class FakeI3D(torch.nn.Module):
    """The I3D TorchScript's call signature: (B, 3, T, H, W) -> (B, 400)."""

    def forward(self, x: torch.Tensor, rescale: bool, resize: bool, return_features: bool) -> torch.Tensor:
        assert x.shape[1:] == (3, 16, 224, 224) and not rescale and not resize and return_features
        assert float(x.min()) >= -1 and float(x.max()) <= 1
        return x.mean(dim=(3, 4)).flatten(1).repeat(1, 9)[:, :400]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_i3d_features_need_weights_and_read_16_frames_at_224(tmp_path):
    with pytest.raises(FeaturesUnavailable, match="i3d-weights"):
        I3DFeatures(None)
    path = tmp_path / "i3d.pt"
    torch.jit.script(FakeI3D()).save(str(path))
    features = I3DFeatures(path)
    video = np.random.default_rng(0).integers(0, 256, (2, 17, 16, 16, 3), dtype=np.uint8)
    assert features(video).shape == (2, 400)
    with pytest.raises(ValueError, match="16 frames"):
        features(video[:, :8])


def video_vq_recipe(out, frames=4, max_steps=TRAIN["max_steps"], **model) -> dict:
    return dict(
        task="tokenizer",
        tokenizer="frame_vq",
        output_dir=str(out),
        data=dict(dataset="moving_digits", resolution=16, frames=frames, batch_size=4),
        model=dict(**TINY_VQ, frames=frames, codebook_size=32, codebook_dim=4, **model),
        train={**TRAIN, "max_steps": max_steps},
    )


def test_video_pipeline_train_sample_fvd_and_frame_prediction(tmp_path):
    vq = train(recipe_from_dict(video_vq_recipe(tmp_path / "vq")))
    classifier = dict(
        task="classifier",
        output_dir=str(tmp_path / "cls"),
        data=dict(dataset="moving_digits", resolution=16, frames=4, batch_size=16),
        model=dict(num_classes=10, resolution=16, frames=4, channels=[8, 16], feature_dim=16),
        train=TRAIN,
    )
    cls = train(recipe_from_dict(classifier))
    gen = gpt_recipe(tmp_path / "gpt", vq / "model")
    gen["data"].update(dataset="moving_digits", resolution=16, frames=4)
    run = train(recipe_from_dict(gen))
    model = models.load(run / "model")
    assert model.config.frames == 4 and model.config.rope == "3d" and model.config.num_tokens == 64
    out = tmp_path / "samples"
    args = [
        "--ckpt",
        str(run),
        "--num-samples",
        "6",
        "--batch-size",
        "4",
        "--cfg-scale",
        "2",
        "--out",
        str(out),
    ]
    evaluation = [
        "--fid",
        "moving_digits",
        "--fid-features",
        "classifier",
        "--classifier",
        str(cls / "model"),
    ]
    assert sample_cli.main(args + evaluation) == 0
    videos = np.load(out / "samples.npz")["arr_0"]
    assert videos.shape == (6, 4, 16, 16, 3) and videos.dtype == np.uint8
    assert read_frames(out / "videos" / "000005.mp4").shape == (4, 16, 16, 3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fvd_classifier"] > 0 and "4 frames" in metrics["features"]
    assert metrics["reference_size"] == len(MovingDigitsDataset()) and "class_consistency" in metrics
    assert sample_cli.main(args + ["--fid", "moving_digits"]) == 2  # I3D weights missing: a clear error
    # frame prediction: the first two frames are the tokenizer's reconstruction of the real ones
    given = tmp_path / "given"
    assert (
        sample_cli.main(args[:-1] + [str(given), "--given-frames", "2", "--given-from", "moving_digits"]) == 0
    )
    tok = tokenizers.load(run / "tokenizer")
    real = torch.stack([MovingDigitsDataset(16, 4)[i][0] for i in range(6)])
    expected = (
        ((tok.decode(tok.encode(real))[:, :2] + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2)
    )
    assert np.abs(np.load(given / "samples.npz")["arr_0"][:, :2].astype(int) - expected.numpy()).max() <= 1
    assert np.array_equal(
        np.load(given / "samples.npz")["labels"], [MovingDigitsDataset().labels[i] for i in range(6)]
    )
    assert sample_cli.main(args + ["--given-frames", "4", "--given-from", "moving_digits"]) == 2
    # next-frame model on the same tokens
    far = gpt_recipe(tmp_path / "far", vq / "model")
    far["data"].update(dataset="moving_digits", resolution=16, frames=4)
    far.update(next_frame=True, train={**TRAIN, "max_steps": 2})
    far_run = train(recipe_from_dict(far))
    assert isinstance(models.load(far_run / "model"), NextFrameLlama)
    assert (
        sample_cli.main(["--ckpt", str(far_run), "--num-samples", "2", "--out", str(tmp_path / "far_s")]) == 0
    )


def test_text_conditional_video_generation(tmp_path):
    vq = train(recipe_from_dict(video_vq_recipe(tmp_path / "vq", max_steps=2)))
    gen = t2i_recipe(tmp_path / "t2v", vq / "model", max_steps=2)
    gen["data"].update(dataset="moving_digits", resolution=16, frames=4)
    run = train(recipe_from_dict(gen))
    out = tmp_path / "s"
    prompt = ["--prompt", "a moving handwritten digit seven", "--num-samples", "2", "--cfg-scale", "2"]
    assert sample_cli.main(["--ckpt", str(run), *prompt, "--out", str(out)]) == 0
    assert np.load(out / "samples.npz")["arr_0"].shape == (2, 4, 16, 16, 3)
    assert (out / "videos" / "000001.mp4").is_file()


def test_causal_video_tokenizer_trains_and_feeds_the_generator(tmp_path):
    recipe = video_vq_recipe(tmp_path / "cvq", frames=5, temporal_downsample=1)
    recipe.update(tokenizer="causal_video", train={**TRAIN, "max_steps": 2})
    vq = train(recipe_from_dict(recipe))
    assert isinstance(tokenizers.load(vq / "model"), CausalVideoVQModel)
    gen = gpt_recipe(tmp_path / "gpt", vq / "model", max_steps=2)
    gen["data"].update(dataset="moving_digits", resolution=16, frames=5)
    run = train(recipe_from_dict(gen))
    assert models.load(run / "model").config.frames == 3  # 1 + 4/2 latent frames
    out = tmp_path / "s"
    assert sample_cli.main(["--ckpt", str(run), "--num-samples", "2", "--out", str(out)]) == 0
    assert np.load(out / "samples.npz")["arr_0"].shape == (2, 5, 16, 16, 3)
