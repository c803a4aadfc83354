"""Token-Shuffle: windows of ids, the plain Llama at window 1, cached sampling of whole windows,
the loss and the refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from argen import paradigms
from argen.checkpoint import CheckpointError
from argen.models.llama import Llama, LlamaConfig
from argen.paradigms.token_shuffle import ShuffleOptions, TokenShuffle, from_windows, to_windows
from argen.sampling.config import SamplingConfig
from argen.sampling.next_token import sample_next_token
from argen.tokenizers.layout import GridLayout

MODEL = LlamaConfig(vocab_size=12, num_classes=3, dim=32, n_layer=2, n_head=2)


class Grid:
    layout = GridLayout(4, 4, 12)


def shuffled(window: int):
    torch.manual_seed(0)
    sizes = dict(vocab_size=12, grid_size=(4, 4))
    model = TokenShuffle().build(MODEL, ShuffleOptions(window), Grid(), sizes).eval()
    torch.manual_seed(1)
    for p in model.parameters():  # weights that give the heads something to say
        torch.nn.init.normal_(p, std=0.3)
    return model


def test_windows_round_trip_in_raster_order_of_windows():
    grid = torch.arange(16).view(1, 4, 4)
    windows = to_windows(grid, 2)
    assert windows.tolist() == [[[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]]
    assert torch.equal(from_windows(windows, 4, 4), grid)


def test_window_one_is_the_plain_llama():
    model = shuffled(1)
    torch.manual_seed(1)
    plain = Llama(replace(MODEL, grid_size=(4, 4))).eval()
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.3)
    assert model.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(model.state_dict())
    ids, labels = torch.randint(0, 12, (2, 16)), torch.tensor([0, 2])
    torch.testing.assert_close(model(ids[..., None], labels), plain(ids, labels))
    config = SamplingConfig(cfg_scale=1.5, top_k=5)
    ours = TokenShuffle().sample(
        model, Grid(), labels, config, torch.Generator().manual_seed(3), paradigms.SamplingExtras()
    )
    theirs = sample_next_token(plain, labels, config, torch.Generator().manual_seed(3))
    assert torch.equal(ours[..., 0], theirs)


def test_steps_emit_whole_windows_as_recomputing_would():
    model = shuffled(2)
    assert model.config.num_tokens == 4 and model.output.out_features == 4 * 12
    labels = torch.tensor([1, 2])
    config = SamplingConfig(temperature=0.0, cfg_scale=2.0)
    extras = paradigms.SamplingExtras()
    windows = TokenShuffle().sample(model, Grid(), labels, config, torch.Generator(), extras)
    expected = torch.zeros(2, 4, 4, dtype=torch.long)
    rows = model.with_null(labels)
    for i in range(4):  # the whole sequence again at every step, argmax of each head
        logits = model(expected.repeat(2, 1, 1), rows)[:, i].view(4, 4, 12)
        cond, uncond = logits.chunk(2)
        expected[:, i] = (uncond + 2.0 * (cond - uncond)).argmax(-1)
    assert torch.equal(windows, expected)


def test_loss_is_the_cross_entropy_of_every_id():
    model = shuffled(2)
    tokens, labels = torch.randint(0, 12, (3, 16)), torch.tensor([0, 1, 2])
    loss, _ = TokenShuffle().loss(model, Grid(), tokens, labels)
    windows = to_windows(tokens.view(3, 4, 4), 2)
    logits = model(windows, labels).view(3, 4, 4, 12)
    by_hand = -logits.log_softmax(-1).gather(-1, windows[..., None]).mean()
    torch.testing.assert_close(loss, by_hand)


def test_refusals():
    with pytest.raises(ValueError, match="must divide the tokenizer's grid"):
        TokenShuffle().build(MODEL, ShuffleOptions(3), Grid(), dict(vocab_size=12, grid_size=(4, 4)))
    with pytest.raises(ValueError, match="window must be >= 1"):
        ShuffleOptions(0)
    with pytest.raises(CheckpointError, match="in windows of 2"):
        TokenShuffle().check_pair(shuffled(2), GridLayout(8, 8, 12), "gen", "tok")
