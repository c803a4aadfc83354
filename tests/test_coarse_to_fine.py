"""Coarse-to-fine labels (CTF): k-means of the codebook, the bidirectional fine-label model,
two-stage sampling, and both training stages through train.py and sample.py."""

import json

import numpy as np
import pytest
import torch

from argen import models, tokenizers
from argen.checkpoint import save_model
from argen.cli import sample as sample_cli
from argen.models.caption import Caption
from argen.models.llama import Llama, LlamaConfig
from argen.models.refiner import FineLabelConfig, FineLabelTransformer
from argen.sampling import SamplingConfig
from argen.sampling.coarse_to_fine import sample_coarse_to_fine
from argen.sampling.next_token import sample_next_token
from argen.tokenizers import CoarseToFineLayout, CoarseToFineVQModel, VQConfig, VQModel
from argen.tokenizers.coarse_to_fine import kmeans
from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train
from tests.conftest import gpt_recipe

CLUSTERS, CODES = 4, 32


def clustered_model(seed: int = 0) -> FineLabelTransformer:
    torch.manual_seed(seed)
    config = FineLabelConfig(
        vocab_size=CLUSTERS,
        fine_vocab_size=CODES,
        grid_size=(2, 2),
        num_classes=3,
        dim=32,
        n_layer=2,
        n_head=2,
    )
    model = FineLabelTransformer(config).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    model.coarse_labels.copy_(torch.arange(CODES) % CLUSTERS)
    return model


def test_kmeans_labels_are_a_function_of_the_codebook():
    torch.manual_seed(0)
    blobs = torch.cat([torch.randn(20, 3) * 0.05 + centre for centre in torch.eye(3) * 5])  # 3 far blobs
    labels, centres = kmeans(blobs, 3)
    assert labels.shape == (60,) and centres.shape == (3, 3)
    assert all(len(set(labels[i * 20 : (i + 1) * 20].tolist())) == 1 for i in range(3))  # blobs recovered
    assert len(set(labels.tolist())) == 3
    assert torch.equal(kmeans(blobs, 3)[0], labels)  # deterministic under the seed
    many, _ = kmeans(blobs, 40)  # more clusters than natural groups: still none empty
    assert torch.bincount(many, minlength=40).min() >= 1
    with pytest.raises(ValueError, match="non-empty clusters"):
        kmeans(torch.zeros(5, 2), 2)


def test_coarse_tokenizer_keeps_the_vq_and_saves_its_labels(tmp_path):
    torch.manual_seed(0)
    shape = dict(resolution=8, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, z_channels=8)
    vq = VQModel(VQConfig(**shape, norm_groups=4, codebook_size=CODES, codebook_dim=4)).eval()
    ctf = CoarseToFineVQModel.from_vq(vq, CLUSTERS).eval()
    assert ctf.layout == CoarseToFineLayout(4, 4, CLUSTERS, CODES)
    assert torch.bincount(ctf.coarse_labels, minlength=CLUSTERS).min() >= 1
    pixels = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(ctf.encode(pixels), vq.encode(pixels))
    assert torch.equal(ctf.coarse(torch.tensor([[0, 5]])), ctf.coarse_labels[torch.tensor([[0, 5]])])
    loaded = tokenizers.load(save_model(ctf, tmp_path / "ctf"))
    assert torch.equal(loaded.coarse_labels, ctf.coarse_labels)
    with pytest.raises(ValueError, match="num_clusters"):
        CoarseToFineVQModel.from_vq(vq, CODES + 1)


def test_fine_label_model_masks_to_clusters_and_sees_the_whole_sequence():
    model = clustered_model()
    coarse = torch.tensor([[0, 1, 2, 3], [3, 3, 0, 1]])
    logits = model(coarse, torch.tensor([0, 2]))
    assert logits.shape == (2, 4, CODES) and logits.dtype == torch.float32
    inside = model.coarse_labels[None, None, :] == coarse[..., None]
    assert logits[inside].isfinite().all() and (logits[~inside] == float("-inf")).all()
    changed = coarse.clone()
    changed[:, -1] = (changed[:, -1] + 1) % CLUSTERS
    first = model(changed, torch.tensor([0, 2]))[:, 0]
    assert not torch.allclose(first[first.isfinite()], logits[:, 0][logits[:, 0].isfinite()])  # not causal
    text = FineLabelTransformer(
        FineLabelConfig(
            vocab_size=CLUSTERS,
            fine_vocab_size=CODES,
            grid_size=(2, 2),
            condition="text",
            caption_dim=6,
            caption_len=3,
            num_classes=0,
            dim=32,
            n_layer=1,
            n_head=2,
        )
    ).eval()
    caption = Caption(torch.randn(2, 3, 6), torch.tensor([[False, True, True], [True, True, True]]))
    assert text(coarse, caption).shape == (2, 4, CODES)
    mask = text.attention_mask(caption, 7)
    assert not mask[0, 0, 4, 0] and mask[0, 0, 1, 6] and mask[1, 0, 0, 6]


def test_two_stage_sampling_is_seeded_and_stays_in_the_clusters():
    torch.manual_seed(0)
    coarse_model = Llama(
        LlamaConfig(vocab_size=CLUSTERS, grid_size=(2, 2), num_classes=3, dim=32, n_layer=2, n_head=2)
    ).eval()
    for p in coarse_model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    refiner, labels = clustered_model(), torch.tensor([0, 1, 2])
    config = SamplingConfig(cfg_scale=2.0)

    def draw(seed: int) -> torch.Tensor:
        return sample_coarse_to_fine(
            coarse_model, refiner, labels, config, 1.0, torch.Generator().manual_seed(seed)
        )

    fine = draw(0)
    assert fine.shape == (3, 4) and torch.equal(fine, draw(0)) and not torch.equal(fine, draw(1))
    coarse = sample_next_token(coarse_model, labels, config, torch.Generator().manual_seed(0))
    assert torch.equal(refiner.coarse_labels[fine], coarse)
    greedy = sample_coarse_to_fine(coarse_model, refiner, labels, SamplingConfig(), 0.0, torch.Generator())
    plain = SamplingConfig()
    expected = refiner(sample_next_token(coarse_model, labels, plain, torch.Generator()), labels).argmax(-1)
    assert torch.equal(greedy, expected)


def test_both_stages_through_train_and_sample(tmp_path, trained):
    stage1 = gpt_recipe(tmp_path / "ctf", trained["vq"] / "model")
    stage1["coarse_clusters"] = 8
    coarse = train(recipe_from_dict(stage1))
    assert json.loads((coarse / "model" / "config.json").read_text())["vocab_size"] == 8
    assert isinstance(tokenizers.load(coarse / "tokenizer"), CoarseToFineVQModel)
    stage2 = gpt_recipe(tmp_path / "refiner", coarse / "tokenizer")
    stage2.update(task="refiner")
    stage2["data"]["token_cache"] = str(tmp_path / "ctf_tokens")
    refiner = train(recipe_from_dict(stage2))
    assert isinstance(models.load(refiner / "model"), FineLabelTransformer)
    out = tmp_path / "samples"
    args = ["--ckpt", str(coarse), "--num-samples", "4", "--cfg-scale", "2", "--out", str(out)]
    assert sample_cli.main([*args, "--refiner", str(refiner)]) == 0
    assert np.load(out / "samples.npz")["arr_0"].shape == (4, 8, 8, 3)
    assert sample_cli.main(args) == 2  # coarse labels alone are not an image
    plain = ["--ckpt", str(trained["gpt"]), "--refiner", str(refiner), "--out", str(tmp_path / "p")]
    assert sample_cli.main(plain) == 2
    wrong = gpt_recipe(tmp_path / "bad", trained["vq"] / "model")
    wrong.update(task="refiner")
    with pytest.raises(ValueError, match="coarse-to-fine tokenizer"):
        train(recipe_from_dict(wrong))
