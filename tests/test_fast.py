"""Speed options must not change results: compiled decoding, activation checkpointing."""

import os
import shutil

import pytest
import torch

from argen.sampling import SamplingConfig, sample_next_token
from argen.sampling.next_scale import NextScaleOptions
from argen.sampling.next_token import NextTokenOptions
from tests.test_llama import tiny_llama


def test_compiled_decoding_draws_the_same_tokens_as_eager():
    model, labels = tiny_llama(n_kv_head=2), torch.tensor([0, 3])
    config = SamplingConfig(cfg_scale=2.0, top_k=20)
    eager = sample_next_token(model, labels, config, torch.Generator().manual_seed(0))
    if not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c):
        pytest.skip("no C++ compiler: torch.compile cannot build CPU kernels here")
    compiled = sample_next_token(
        model, labels, config, torch.Generator().manual_seed(0), NextTokenOptions(compile=True)
    )
    assert torch.equal(eager, compiled)  # any compile failure (a graph break included) fails here


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    model = tiny_llama().train()
    tokens, labels = torch.randint(0, 50, (2, 12)), torch.tensor([1, 2])

    def loss_and_grads():
        model.zero_grad()
        logits = model(tokens, labels)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten())
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    model.config.class_dropout = 0.0
    plain_loss, plain = loss_and_grads()
    model.activation_checkpointing = True
    ckpt_loss, ckpt = loss_and_grads()
    assert torch.equal(plain_loss, ckpt_loss)
    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(a, b)


def test_compiled_next_scale_draws_the_same_tokens_as_eager():
    from argen.sampling.next_scale import sample_next_scale
    from tests.test_next_scale import tiny_generator, tiny_tokenizer

    model, tokenizer, labels = tiny_generator(), tiny_tokenizer(), torch.tensor([0, 3])
    config = SamplingConfig(cfg_scale=2.0, cfg_schedule="linear", top_k=20)
    eager = sample_next_scale(model, tokenizer, labels, config, torch.Generator().manual_seed(0))
    if not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c):
        pytest.skip("no C++ compiler: torch.compile cannot build CPU kernels here")
    compiled = sample_next_scale(
        model, tokenizer, labels, config, torch.Generator().manual_seed(0), NextScaleOptions(compile=True)
    )
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled, strict=True))  # a graph break fails too
