"""Generators assembled from parts: saved runs of the earlier layout load with the same
outputs, and the attention patterns are the sequence layouts they name."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from argen import load
from argen.models.parts import Bidirectional, BlockCausal, Causal, ScaleCausal

SAVED = Path(__file__).parent / "fixtures" / "saved_generators"


@pytest.mark.parametrize(
    ("saved", "inputs", "outputs"),
    [("shuffled", "windows", "logits"), ("masked_flow", "inputs", "z")],  # Token-Shuffle, MAR
)
def test_generators_saved_before_the_parts_load_with_their_outputs(saved, inputs, outputs):
    probe = load_file(SAVED / saved / "probe.safetensors")
    model = load(SAVED / saved)
    with torch.no_grad():
        values = model(probe[inputs], probe["labels"])
    torch.testing.assert_close(values, probe[outputs], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("pattern", "num_tokens", "length"),
    [
        (Causal(), 4, 1 + 4 - 1),
        (Bidirectional(), 4, 1 + 4),
        (BlockCausal(1, 2), 4, 1 + 4),
        (ScaleCausal((1, 2)), 5, 5),
    ],
)
def test_each_pattern_sizes_the_sequence_it_masks(pattern, num_tokens, length):
    assert pattern.length(1, num_tokens) == length
    assert pattern.visible(length, "cpu").shape == (length, length)


def test_patterns_show_the_keys_of_their_layouts():
    torch.testing.assert_close(Causal().visible(3, "cpu"), torch.ones(3, 3, dtype=torch.bool).tril())
    assert Bidirectional().visible(3, "cpu").all()
    frames = BlockCausal(prefix_len=1, block_len=2).visible(5, "cpu")  # prefix, frame 0, frame 1
    expected = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]],
        dtype=torch.bool,
    )
    torch.testing.assert_close(frames, expected)
    scales = ScaleCausal((1, 2)).visible(5, "cpu")  # scale 0: one token, scale 1: four
    torch.testing.assert_close(
        scales, torch.tensor([[1, 0, 0, 0, 0]] + [[1, 1, 1, 1, 1]] * 4, dtype=torch.bool)
    )
    with pytest.raises(ValueError, match="exactly the sequence"):
        ScaleCausal((1, 2)).visible(6, "cpu")
