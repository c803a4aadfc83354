"""Hub references: huggingface_hub's real download, cache and offline code against a local
stand-in for the Hub (tests/fake_hub.py), for runs, files, folders and revisions."""

import numpy as np
import pytest
import torch
from huggingface_hub import constants

import argen
from argen import hub
from argen.checkpoint import CheckpointError
from argen.cli import sample as sample_cli
from argen.convert import loaders
from tests.fake_hub import FakeHub
from tests.test_convert_llamagen import official_gpt_state


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A running stand-in for the Hub, an empty Hub cache and an empty conversion cache."""
    fake = FakeHub()
    url, server = fake.serve()
    monkeypatch.setattr(constants, "ENDPOINT", url)  # what HF_ENDPOINT sets
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    monkeypatch.setattr(loaders, "CONVERTED", tmp_path / "converted")
    yield fake
    server.shutdown()


def test_references_are_told_from_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub.parse_reference("FoundationVision/LlamaGen:c2i_B_256.pt") == hub.HubReference(
        "FoundationVision/LlamaGen", "c2i_B_256.pt"
    )
    assert hub.parse_reference("hf://me/run@v1") == hub.HubReference("me/run", None, "v1")
    assert hub.parse_reference("me/run:tokenizer@3f2a") == hub.HubReference("me/run", "tokenizer", "3f2a")
    (tmp_path / "runs" / "gpt").mkdir(parents=True)
    for local in ("runs/gpt", "./me/run", "/abs/path", "runs"):
        assert hub.parse_reference(local) is None
    with pytest.raises(CheckpointError, match="not a Hub reference"):
        hub.parse_reference("hf://no-owner")


def test_a_run_on_the_hub_samples_as_its_local_copy(trained, fake_hub, tmp_path):
    fake_hub.publish("lab/digits-gpt", trained["gpt"])
    common = ["--num-samples", "4", "--classes", "1,2", "--seed", "3"]
    assert sample_cli.main(["--ckpt", str(trained["gpt"]), "--out", str(tmp_path / "local"), *common]) == 0
    assert sample_cli.main(["--ckpt", "lab/digits-gpt", "--out", str(tmp_path / "hub"), *common]) == 0
    local, remote = (np.load(tmp_path / d / "samples.npz")["arr_0"] for d in ("local", "hub"))
    np.testing.assert_array_equal(remote, local)
    # a folder of a repository: the run's tokenizer
    assert isinstance(argen.load("lab/digits-gpt:tokenizer"), type(argen.load(trained["gpt"] / "tokenizer")))


def test_revisions_pin_the_file_and_official_files_convert_once(fake_hub, tmp_path, monkeypatch):
    first, second = tmp_path / "v1", tmp_path / "v2"
    for folder, scale in ((first, 1.0), (second, 2.0)):
        folder.mkdir()
        state = {k: v * scale for k, v in official_gpt_state().items()}
        torch.save({"model": state}, folder / "c2i_B_128.pt")
    sha = fake_hub.publish("lab/llamagen", first)
    fake_hub.publish("lab/llamagen", second)  # main moves on
    pinned = argen.load(f"lab/llamagen:c2i_B_128.pt@{sha}")
    latest = argen.load("lab/llamagen:c2i_B_128.pt")
    torch.testing.assert_close(latest.tok_emb.weight, 2 * pinned.tok_emb.weight)
    local = argen.load(first / "c2i_B_128.pt")
    torch.testing.assert_close(pinned.tok_emb.weight, local.tok_emb.weight, rtol=0, atol=0)
    converted = sorted(p.name for p in loaders.CONVERTED.iterdir())
    assert len(converted) == 2 and all(name.endswith("-any-named") for name in converted)
    # offline, from the caches alone (no second conversion): the same weights; what was never
    # fetched is a clear error
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(loaders.OfficialFile, "convert", None)
    again = argen.load(f"lab/llamagen:c2i_B_128.pt@{sha}")
    torch.testing.assert_close(again.tok_emb.weight, pinned.tok_emb.weight, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="not in the Hub cache"):
        argen.load("lab/llamagen:c2i_L_256.pt")


def test_missing_repositories_files_and_revisions_are_named(fake_hub, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("hello")
    fake_hub.publish("lab/run", tmp_path / "run")
    with pytest.raises(CheckpointError, match="no repository lab/nothing"):
        argen.load("lab/nothing:c2i_B_256.pt")
    with pytest.raises(CheckpointError, match="lab/run has no file c2i_B_256.pt"):
        argen.load("lab/run:c2i_B_256.pt")
    with pytest.raises(CheckpointError, match="lab/run has no revision v9"):
        argen.load("lab/run:notes.txt@v9")
    with pytest.raises(CheckpointError, match="not a checkpoint this version reads"):
        argen.load("lab/run:notes.txt")


def test_a_pushed_run_is_staged_with_its_card_and_samples_from_the_hub(
    trained, fake_hub, tmp_path, monkeypatch
):
    from huggingface_hub import HfApi

    from argen.cli import push

    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"fid_classifier": 0.5}')
    staged = tmp_path / "staged"
    assert (
        push.main([str(trained["gpt"]), "lab/pushed", "--metrics", str(metrics), "--stage", str(staged)]) == 0
    )
    assert sorted(p.name for p in staged.iterdir()) == [
        "README.md",
        "ema",
        "model",
        "recipe.json",
        "tokenizer",
    ]
    card = (staged / "README.md").read_text()
    assert "python sample.py --ckpt lab/pushed" in card and '"fid_classifier": 0.5' in card
    assert '"task": "generator"' in card  # the recipe
    # the upload path: the Hub's API calls, here committing to the stand-in
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo, **kw: None)
    monkeypatch.setattr(
        HfApi,
        "upload_folder",
        lambda self, repo_id, folder_path, **kw: fake_hub.publish(repo_id, folder_path),
    )
    assert push.main([str(trained["gpt"]), "lab/pushed"]) == 0
    out = tmp_path / "samples"
    assert sample_cli.main(["--ckpt", "lab/pushed", "--num-samples", "2", "--out", str(out)]) == 0
    assert np.load(out / "samples.npz")["arr_0"].shape[0] == 2
    assert push.main([str(trained["gpt"] / "model"), "lab/pushed"]) == 2  # not a run
