"""Details that must match the reference algorithms: LANTERN++'s lambda rule and LANTERN's
residual and neighbour space, MAR's temperature, FlowAR's SDE grid, last step and guidance
interval, raster flow heads,
JPEG scan limits and LlamaGen's top-p at ties."""

from __future__ import annotations

import math

import pytest
import torch

from argen import paradigms
from argen.models import ContinuousLlamaConfig, Llama, LlamaConfig
from argen.models.heads import FlowHead, FlowHeadConfig
from argen.paradigms import SpeculationOptions
from argen.sampling import SamplingConfig
from argen.sampling.flow import FlowSettings, flow_velocity, sample_flow, sample_sde_path, sde_times
from argen.sampling.logits import filter_logits
from argen.sampling.speculative import (
    DraftRules,
    SpeculativeConfig,
    code_neighbours,
    relaxed_mass,
    sample_speculative,
    target_token,
)
from argen.tokenizers import VQConfig, VQModel
from argen.tokenizers.jpeg_scan import ScanFormat, scan_is_valid
from tests.test_continuous import tiny_tokenizer
from tests.test_continuous_speculative import gaussian_velocity
from tests.test_speculative import pair


def test_lantern_plus_plus_lambda_bounds_the_run_not_the_sum():
    p = torch.tensor([[0.010, 0.015, 0.004, 0.971]])
    x, neighbours = torch.tensor([0]), torch.tensor([[1, 2], [0, 2], [0, 1], [0, 1]])
    # (lambda - 1) p(x) = 0.010: no neighbour run fits, so nothing is added (delta plays no part)
    assert relaxed_mass(p, x, neighbours, 1.0, 2.0).item() == pytest.approx(0.010)
    # (lambda - 1) p(x) = 0.020: the run {1, 2} (0.019) fits whole
    assert relaxed_mass(p, x, neighbours, 0.0, 3.0).item() == pytest.approx(0.029)
    assert SpeculativeConfig(2, relaxed_k=2, relaxed_lambda=2.0).relaxed  # lambda alone relaxes


def test_lantern_residual_drops_the_rejected_codes_neighbours_from_q():
    p = torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]]])  # (B=1, k+1=2, V=4)
    q = torch.tensor([[[0.4, 0.3, 0.2, 0.1]]])  # (B, k=1, V)
    m = torch.tensor([0])  # the first draft was rejected
    as_is = lambda probs: probs  # noqa: E731 - return the distribution drawn from
    standard = target_token(p, q, m, 1, as_is, False)
    torch.testing.assert_close(standard, torch.tensor([[0.0, 0.0, 0.25, 0.75]]))
    unseen = torch.tensor([[False, True, True, False]])  # the rejected code's k + 1 nearest codes
    lantern = target_token(p, q, m, 1, as_is, False, unseen)  # max(p - q', 0), q' = [0.4, 0, 0, 0.1]
    torch.testing.assert_close(lantern, torch.tensor([[0.0, 0.2, 0.3, 0.3]]) / 0.8)


def test_a_residual_of_zero_mass_falls_back_to_the_target():
    p = torch.tensor([[[0.0, 0.5, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25]]])
    q = torch.tensor([[[0.0, 0.5, 0.5, 0.0]]])  # p == q: max(p - q, 0) is all zero
    as_is = lambda probs: probs  # noqa: E731
    # argen's documented choice: p (LANTERN's uniform would give mass to codes 0 and 3)
    torch.testing.assert_close(target_token(p, q, torch.tensor([0]), 1, as_is, False), p[:, 0])


def test_relaxed_residual_options_change_the_draws():
    torch.manual_seed(0)
    target, draft = pair(vocab_size=16, grid_size=(1, 12))
    with torch.no_grad():  # a target far from uniform, so that drafts are rejected
        target.output.weight.normal_(std=0.5)
    labels = torch.arange(5).repeat(8)
    neighbours = code_neighbours(torch.randn(16, 4, generator=torch.Generator().manual_seed(0)), 4)
    runs = {}
    for residual in ("lantern", "standard"):
        spec = SpeculativeConfig(3, relaxed_k=3, relaxed_delta=0.1, relaxed_residual=residual)
        g = torch.Generator().manual_seed(0)
        rules = DraftRules(neighbours)
        runs[residual] = sample_speculative(target, draft, labels, SamplingConfig(), spec, g, rules)[0]
    assert not torch.equal(runs["lantern"], runs["standard"])  # same seeds: only the residual differs


def test_relaxed_neighbours_are_measured_on_the_raw_embeddings_by_default():
    torch.manual_seed(0)
    tok = VQModel(VQConfig(resolution=8, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, z_channels=8,
                           norm_groups=4, codebook_size=32, codebook_dim=4))  # fmt: skip
    with torch.no_grad():  # codes of very different lengths: raw and normalised neighbours differ
        tok.quantize.embedding.weight.mul_(torch.rand(32, 1) * 10)
    target = Llama(LlamaConfig(vocab_size=32, grid_size=(4, 4), dim=16, n_layer=1, n_head=2, num_classes=3))
    paradigm = paradigms.for_generator(target, tok.layout)
    spaces = {}
    for space in ("embedding", "lookup"):
        options = SpeculationOptions("draft", 2, relaxed_k=3, relaxed_delta=0.1, relaxed_space=space)
        spaces[space] = paradigm.speculation(target, tok, target, options, SamplingConfig()).neighbours
    torch.testing.assert_close(spaces["embedding"], code_neighbours(tok.quantize.embedding.weight, 4))
    torch.testing.assert_close(spaces["lookup"], code_neighbours(tok.quantize.codebook(), 4))
    assert not torch.equal(spaces["embedding"], spaces["lookup"])


class GaussianHead(torch.nn.Module):
    """A flow head with the exact velocity of data N(0, 0.5^2); it records the times it is called at."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.times.append(t.flatten()[0].item())
        return gaussian_velocity(0.5)(x, t.flatten()[0].item())


def drawn_std(solver: str, temperature: float, steps: int = 25) -> float:
    z = torch.zeros(4000, 1, 4)
    settings = FlowSettings(steps, solver, temperature=temperature)
    return sample_flow(GaussianHead(), z, 1, settings, torch.Generator().manual_seed(0)).std().item()


def test_temperature_scales_every_sde_step_but_not_the_start():
    full, half, cold = drawn_std("sde", 1.0), drawn_std("sde", 0.5), drawn_std("sde", 0.0)
    assert full == pytest.approx(0.5, abs=0.03)  # the target N(0, 0.5^2)
    assert half < 0.8 * full  # the steps' noise is scaled (before that fix: 0.480, 0.475)
    # MAR draws the start at full scale: at temperature 0 the start still spreads the samples
    # (they were all 0 when the start was scaled too)
    assert cold > 0.02
    assert drawn_std("euler", 0.0) == 0.0  # an ODE's only noise is its start: scaled


def test_sde_grid_is_flowars_at_every_step_count():
    for steps in (10, 25, 50):
        head = GaussianHead()
        sample_flow(
            head, torch.zeros(2, 1, 4), 1, FlowSettings(steps, "sde"), torch.Generator().manual_seed(0)
        )
        expected = torch.linspace(1, 0.04, steps)  # then one last step from 0.04 to 0
        torch.testing.assert_close(torch.tensor(head.times), expected)
        assert sde_times(steps)[-2:] == pytest.approx([0.04, 0.0])


def test_plain_sde_sampling_ends_at_the_last_mean():
    torch.manual_seed(0)
    head = FlowHead(FlowHeadConfig(width=8), token_dim=2, cond_dim=4)
    for param in head.parameters():
        torch.nn.init.normal_(param, std=0.3)
    z = torch.randn(3, 2, 4)
    drawn = sample_flow(head, z, 2, FlowSettings(5, "sde"), torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    start = torch.randn(3, 2, 2, generator=g)
    normal = lambda: torch.randn(3, 2, 2, generator=g)  # noqa: E731
    path, means = sample_sde_path(flow_velocity(head, z, False), start, 5, 1.0, normal)
    torch.testing.assert_close(drawn, means[-1])  # no noise added at the last step
    assert not torch.allclose(drawn, path[-1])  # a path that adds it ends elsewhere


def test_flowar_guidance_interval_is_offered_by_name():
    from argen.cli.sample_args import build_parser, sampling_config

    args = build_parser().parse_args(["--ckpt", "x", "--cfg-noise-interval", "flowar"])
    assert sampling_config(args).cfg_noise_interval == (0.1, 1.0)
    args = build_parser().parse_args(["--ckpt", "x", "--cfg-noise-interval", "0.2", "0.7"])
    assert sampling_config(args).cfg_noise_interval == (0.2, 0.7)
    with pytest.raises(ValueError, match="LO HI"):
        sampling_config(build_parser().parse_args(["--ckpt", "x", "--cfg-noise-interval", "sit"]))


def test_raster_models_refuse_attention_flow_heads():
    with pytest.raises(ValueError, match="next-scale"):
        ContinuousLlamaConfig(head=FlowHeadConfig(attention=True, width=8, heads=2))


def one_block_scan() -> ScanFormat:
    """One 8x8 block; DC: '0' = size 0; AC: '00' ZRL, '01' EOB, '10' size 11, '110' size 1."""
    dc = {(1, 0b0): 0x00}
    ac = {(2, 0b00): 0xF0, (2, 0b01): 0x00, (2, 0b10): 0x0B, (3, 0b110): 0x01}
    return ScanFormat({(0, 0): dc, (1, 0): ac}, ((0, 0, 0),), 1, 1, 0)


def packed(bits: str) -> bytes:
    bits += "1" * (-len(bits) % 8)  # libjpeg pads with ones
    return int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00")  # byte stuffing


def test_jpeg_scan_refuses_zero_runs_past_63_and_large_ac_categories():
    scan = one_block_scan()
    assert scan_is_valid(packed("0" + "00" * 3 + "01"), scan)  # 48 zeros, then end of block
    assert not scan_is_valid(packed("0" + "00" * 4), scan)  # 64 zeros from coefficient 1: past 63
    assert scan_is_valid(packed("0" + "110" + "0" + "01"), scan)  # category 1
    assert not scan_is_valid(packed("0" + "10" + "0" * 11 + "01"), scan)  # category 11


def test_top_p_keeps_ties_as_llamagen_does():
    logits = torch.tensor([[0.0, -math.log(2), -math.log(2)]])  # probabilities 0.5, 0.25, 0.25
    assert filter_logits(logits, top_p=0.75).isfinite().all()  # the first two hold exactly 0.75
    assert filter_logits(logits, top_p=0.7).isfinite().tolist() == [[True, True, False]]


def test_flowar_resampling_goes_through_the_full_grid():
    tok = tiny_tokenizer(patch_nums=(1, 2, 4)).with_scales((1, 2, 4), "flowar")
    tokens = torch.randn(2, 4, 2)  # scale 1: 2x2 tokens of width 2
    grid = tokens.transpose(1, 2).reshape(2, 2, 2, 2)  # (B, d, 2, 2)
    full = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    expected = torch.nn.functional.interpolate(full, size=(4, 4), mode="area").flatten(2).transpose(1, 2)
    torch.testing.assert_close(tok.next_input(tokens, 1), expected)
    bilinear = tiny_tokenizer(patch_nums=(1, 2, 4)).next_input(tokens, 1)
    assert not torch.allclose(bilinear, expected)
    with pytest.raises(ValueError, match="scale_resample"):
        tiny_tokenizer(patch_nums=(1, 2, 4)).with_scales((1, 2, 4), "nearest")
