"""Every registered tokenizer implements the protocol of its layout family, and deriving a
tokenizer for a paradigm never changes the loaded one."""

from __future__ import annotations

import pytest
import torch

from argen import paradigms
from argen.tokenizers import TOKENIZERS, ContinuousConfig, ContinuousTokenizer, VQModel
from argen.tokenizers.protocols import FAMILIES, GridTokenizer, ScaleTokenizer, family


def built(cls) -> torch.nn.Module:
    with torch.device("meta"):  # shapes only: no weights drawn
        return cls(cls.Config())


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_every_tokenizer_implements_its_familys_protocol(name):
    tokenizer = built(TOKENIZERS[name])
    assert isinstance(tokenizer, family(tokenizer)), f"{name} lacks members of {family(tokenizer).__name__}"


def test_families_tell_tokenizers_apart():
    assert set(FAMILIES) >= {type(built(cls).layout) for cls in TOKENIZERS.values()}
    vq, scales = built(TOKENIZERS["VQModel"]), built(TOKENIZERS["MultiScaleVQModel"])
    assert isinstance(vq, GridTokenizer) and not isinstance(vq, ScaleTokenizer)
    assert isinstance(scales, ScaleTokenizer)

    class Partial(VQModel):  # a grid tokenizer without its quantiser is not one
        def __init__(self):
            torch.nn.Module.__init__(self)

    assert not isinstance(Partial(), GridTokenizer)


def test_paradigm_options_derive_a_new_tokenizer_and_leave_the_loaded_one():
    config = ContinuousConfig(resolution=8, block_out_channels=(8, 8), layers_per_block=1, norm_groups=4)
    loaded = ContinuousTokenizer(config)
    before = loaded.layout
    scales = paradigms.get("continuous_scales")
    derived = scales.prepare_tokenizer(loaded, scales.parse_options({"scales": [1, 4]}), seed=0)
    assert loaded.layout == before and not before.scales
    assert derived.layout.scales == (1, 4) and derived is not loaded


def test_tokenizer_training_takes_the_terms_a_tokenizer_reports():
    from argen.training.recipes import VQLossConfig
    from argen.training.tasks.tokenizer import regulariser

    cfg, t = VQLossConfig(codebook_weight=2.0, kl_weight=0.5), torch.tensor
    assert regulariser({"codebook_loss": t(1.0), "commit_loss": t(3.0)}, cfg) == 8.0  # a VQ
    assert regulariser({"commit_loss": t(3.0), "quantizer_loss": t(0.25)}, cfg) == 6.25  # lookup-free
    assert regulariser({"kl_loss": t(4.0)}, cfg) == 2.0  # a KL autoencoder


def test_a_new_layout_family_registers_and_is_checked(monkeypatch):
    from dataclasses import dataclass
    from typing import Protocol, runtime_checkable

    from argen.tokenizers import protocols
    from argen.tokenizers.protocols import Tokenizer, register_family

    @dataclass(frozen=True)
    class SequenceLayout:
        length: int
        vocab_size: int

    @runtime_checkable
    class SequenceTokenizer(Tokenizer, Protocol):
        def queries(self) -> torch.Tensor: ...

    class Holistic(torch.nn.Module):
        config, layout = None, SequenceLayout(8, 16)

        def encode(self, pixels): ...

        def decode(self, tokens): ...

    monkeypatch.setattr(protocols, "FAMILIES", dict(protocols.FAMILIES))
    with pytest.raises(TypeError, match="belongs to no family"):
        family(Holistic())
    register_family(SequenceLayout, SequenceTokenizer)
    assert not isinstance(Holistic(), family(Holistic()))  # it lacks queries()
    Holistic.queries = lambda self: torch.zeros(8)
    assert isinstance(Holistic(), family(Holistic()))
    with pytest.raises(ValueError, match="already belongs to GridTokenizer"):
        register_family(protocols.GridLayout, SequenceTokenizer)
