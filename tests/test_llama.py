import pytest
import torch

from argen import models
from argen.checkpoint import save_model
from argen.models.llama import Llama, LlamaConfig
from argen.models.rope import apply_rope, rope_2d


def tiny_llama(**kw) -> Llama:
    torch.manual_seed(0)
    shape = dict(vocab_size=50, grid_size=(3, 4), num_classes=5, dim=32, n_layer=2, n_head=4)
    config = LlamaConfig(**{**shape, **kw})
    model = Llama(config).eval()
    for p in model.parameters():  # the zero-initialised head would make every logit equal
        torch.nn.init.normal_(p, std=0.2)
    return model


def test_forward_shapes_dtype():
    model = tiny_llama()
    logits = model(torch.randint(0, 50, (2, 12)), torch.tensor([0, 4]))
    assert logits.shape == (2, 12, 50) and logits.dtype == torch.float32
    with pytest.raises(ValueError, match="expected 12 tokens"):
        model(torch.randint(0, 50, (2, 11)), torch.tensor([0, 4]))


def test_position_i_sees_only_condition_and_earlier_tokens():
    model = tiny_llama()
    tokens, labels = torch.randint(0, 50, (1, 12)), torch.tensor([2])
    changed = tokens.clone()
    changed[0, 5] = (tokens[0, 5] + 1) % 50
    a, b = model(tokens, labels), model(changed, labels)
    torch.testing.assert_close(a[:, :6], b[:, :6])  # logits 0..5 do not see token 5
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    assert not torch.allclose(model(tokens, torch.tensor([3]))[:, 0], a[:, 0])


@pytest.mark.parametrize("n_kv_head", [None, 2, 1])
def test_kv_cached_decoding_equals_full_forward(n_kv_head):
    model = tiny_llama(n_kv_head=n_kv_head)
    tokens, labels = torch.randint(0, 50, (3, 12)), torch.tensor([0, 1, model.null_class])
    full = model(tokens, labels)
    x = torch.cat([model.embed_condition(labels), model.embed_tokens(tokens[:, :-1])], dim=1)
    model.setup_cache(labels)
    steps = [model.forward_cached(x[:, :4], torch.arange(4))]  # a prefill of 4, then one by one
    steps += [model.forward_cached(x[:, i : i + 1], torch.tensor([i])) for i in range(4, 12)]
    model.clear_cache()
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_rope_2d_prefix_is_identity_and_rows_columns_rotate_separately():
    table = rope_2d(2, 3, head_dim=8, base=10000.0, prefix_len=1)
    assert table.shape == (7, 4, 2)
    x = torch.randn(1, 7, 1, 8)
    y = apply_rope(x, table)
    torch.testing.assert_close(y[:, 0], x[:, 0])
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))  # rotations keep the norm
    # grid entry (row 0, col 1) = sequence position 2: only the column half rotates
    torch.testing.assert_close(table[2, :2, 0], torch.ones(2))
    assert not torch.allclose(table[2, 2:, 0], torch.ones(2))


def test_label_dropout_only_in_training():
    model = tiny_llama(class_dropout=1.0)
    labels = torch.tensor([0, 1, 2])
    model.eval()
    assert torch.equal(model.embed_condition(labels), model.class_emb(labels)[:, None])
    model.train()
    null = model.class_emb(torch.full_like(labels, model.null_class))[:, None]
    assert torch.equal(model.embed_condition(labels), null)


def test_save_load_equality(tmp_path):
    model = tiny_llama(n_kv_head=2)
    save_model(model, tmp_path / "gpt")
    loaded = models.load(tmp_path / "gpt")
    assert loaded.config == model.config
    tokens, labels = torch.randint(0, 50, (2, 12)), torch.tensor([1, 2])
    assert torch.equal(loaded(tokens, labels), model(tokens, labels))
