"""Representation alignment (ARRA): the loss's math, the tapped block, the feature cache in the
token cache's order, training that lowers the alignment loss without exporting the adaptor,
and refusals at the boundary."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from argen import models
from argen.data import TokenCacheDataset, build_dataset
from argen.eval import load_classifier
from argen.models.llama import Llama, LlamaConfig
from argen.training.alignment import Adaptor, HiddenTap, aligned_block, alignment_loss
from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train
from tests.conftest import gpt_recipe


def test_alignment_loss_is_one_minus_cosine_of_the_pooled_states():
    torch.manual_seed(0)
    hidden, target, adaptor = torch.randn(3, 5, 4), torch.randn(3, 6), Adaptor(4, 8, 6)
    pooled = hidden[:, 2:].mean(1)  # the positions from skip = 2 on
    expected = 1 - F.cosine_similarity(adaptor(pooled), target, dim=-1).mean()
    torch.testing.assert_close(alignment_loss(hidden, 2, adaptor, target), expected)


def test_the_tap_keeps_the_chosen_blocks_output():
    model = Llama(LlamaConfig(vocab_size=16, grid_size=(2, 2), num_classes=3, dim=16, n_layer=4, n_head=2))
    block, skip = aligned_block(model, None)
    assert block is model.layers[2] and skip == model.config.prefix_len - 1
    tokens, labels = torch.randint(0, 16, (2, 4)), torch.tensor([0, 1])
    with HiddenTap(model.layers[1]) as tap:
        model(tokens, labels)
    x = torch.cat([model.embed_condition(labels), model.embed_tokens(tokens[:, :-1])], 1)
    rope = model.rope[: x.shape[1]]
    for layer in model.layers[:2]:
        x = layer(x, rope, None)
    torch.testing.assert_close(tap.output, x)
    with pytest.raises(ValueError, match="align.layer must be in 0..3"):
        aligned_block(model, 4)


def align_recipe(out, trained, **align) -> dict:
    recipe = gpt_recipe(out, trained["vq"] / "model", max_steps=24, log_every=4, save_every=24)
    recipe["align"] = dict(encoder=str(trained["classifier"] / "model"), weight=2.0, hidden=16) | align
    return recipe


def test_training_with_alignment_lowers_its_loss_and_exports_the_plain_model(trained, tmp_path):
    run = train(recipe_from_dict(align_recipe(tmp_path / "aligned", trained)))
    logs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    align = [entry["align_loss"] for entry in logs if "align_loss" in entry]
    assert len(align) == 6 and align[-1] < align[0] - 0.1  # the adaptor and the model learn to align
    exported = models.load(run / "model")
    plain = models.load(trained["gpt"] / "model")
    assert type(exported) is type(plain) and set(exported.state_dict()) == set(plain.state_dict())
    # the cached features are the encoder's, in the token cache's order (each image, then its
    # mirror when the cache is flipped)
    cache = load_file(str(run / "align_cache" / "features.safetensors"))["features"]
    tokens = TokenCacheDataset(tmp_path / "tokens")
    flip = json.loads((tmp_path / "tokens" / "meta.json").read_text())["flip"]
    assert len(cache) == len(tokens)
    encoder, image = load_classifier(trained["classifier"] / "model").eval(), build_dataset("digits", 8)[1][0]
    with torch.no_grad():
        expected = encoder.features(torch.stack([image, image.flip(-1)]))
    torch.testing.assert_close(cache[2:4] if flip else cache[1:2], expected if flip else expected[:1])


def test_alignment_refuses_what_it_cannot_use(trained, tmp_path):
    with pytest.raises(ValueError, match="is not a model directory"):
        train(recipe_from_dict(align_recipe(tmp_path / "a", trained, encoder=str(tmp_path))))
    with pytest.raises(ValueError, match="align.weight must be > 0"):
        recipe_from_dict(align_recipe(tmp_path / "b", trained, weight=0))
