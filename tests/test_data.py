import logging
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from argen.data import (
    DatasetError,
    DigitsDataset,
    ImageFolderDataset,
    ShardedBatches,
    build_dataset,
)
from argen.data.token_cache import Processes, TokenCacheDataset, build_token_cache, read_meta
from tests.test_tokenizer import tiny_vq


def make_folder(root, sizes=((20, 30), (40, 24))):
    for name, (w, h) in zip(["cat", "dog"], sizes):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (w, h), (i * 80, 10, 200)).save(root / name / f"{i}.png")
    return root


def test_digits_are_real_images_in_range():
    data = DigitsDataset(16)
    image, label = data[0]
    assert len(data) == 1797 and image.shape == (3, 16, 16)
    assert image.min() >= -1 and image.max() <= 1 and label == 0
    assert sorted(data.labels.unique().tolist()) == list(range(10))


def test_image_folder_resizes_any_resolution_and_skips_corrupt_files(tmp_path, caplog):
    root = make_folder(tmp_path / "imgs")
    (root / "cat" / "broken.jpg").write_bytes(b"not a jpeg at all")
    with caplog.at_level(logging.WARNING):
        data = ImageFolderDataset(root, resolution=16)
    assert data.num_skipped == 1 and "skipped 1" in caplog.text
    assert len(data) == 6 and data.classes == ["cat", "dog"]
    image, label = data[4]
    assert image.shape == (3, 16, 16) and label == 1
    assert image.min() >= -1 and image.max() <= 1


def test_empty_and_missing_datasets_fail_clearly(tmp_path):
    with pytest.raises(DatasetError, match="neither an embedded dataset"):
        build_dataset(str(tmp_path / "nowhere"), 16)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no readable images"):
        ImageFolderDataset(tmp_path / "empty", 16)


def test_sharded_batches_cover_each_epoch_once_and_match_one_process():
    single = ShardedBatches(23, batch_size=4, seed=3).iterate()
    shards = [ShardedBatches(23, batch_size=2, seed=3, rank=r, world_size=2).iterate() for r in range(2)]
    seen = []
    for _ in range(5):  # one epoch: 23 // 4 = 5 global batches
        expected = next(single)
        got = next(shards[0]) + next(shards[1])
        assert got == expected
        seen += got
    assert len(set(seen)) == 20


def test_sharded_batches_resume_mid_epoch_and_reject_tiny_datasets():
    batches = ShardedBatches(10, batch_size=3, seed=0)
    full = [b for _, b in zip(range(7), batches.iterate())]
    assert [b for _, b in zip(range(3), batches.iterate(start=4))] == full[4:7]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ShardedBatches(5, batch_size=4, seed=0, world_size=2)


def test_token_cache_roundtrip_with_flips(tmp_path):
    vq, data = tiny_vq(), DigitsDataset(16)
    subset = torch.utils.data.Subset(data, range(10))
    out = build_token_cache(vq, subset, tmp_path / "cache", {"k": 1}, flip=True, sizes=(4, 8))
    cache = TokenCacheDataset(out)
    assert len(cache) == 20 and len(list(out.glob("shard-*.safetensors"))) == 2
    images = torch.stack([subset[i][0] for i in range(10)])
    assert torch.equal(cache.tokens[0::2], vq.encode(images))  # every image as is,
    assert torch.equal(cache.tokens[1::2], vq.encode(images.flip(-1)))  # then mirrored
    assert cache.labels[0::2].tolist() == [subset[i][1] for i in range(10)]
    assert read_meta(out)["num_items"] == 20


def test_token_cache_order_does_not_depend_on_the_number_of_processes(tmp_path):
    vq, data = tiny_vq(), torch.utils.data.Subset(DigitsDataset(16), range(9))
    one = build_token_cache(vq, data, tmp_path / "one", {}, flip=True, sizes=(2, 4))
    barrier = threading.Barrier(3)  # three "processes", as threads sharing the output folder
    workers = [
        threading.Thread(
            target=build_token_cache,
            args=(vq, data, tmp_path / "three", {}, True, (2, 4)),
            kwargs=dict(processes=Processes("cpu", rank, 3, barrier.wait)),
        )
        for rank in range(3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    a, b = TokenCacheDataset(one), TokenCacheDataset(tmp_path / "three")
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.labels, b.labels)
    assert len(list((tmp_path / "three").glob("shard-*"))) == 3


def test_generated_samples_are_a_dataset(tmp_path):
    from argen.data import SamplesDataset
    from argen.images import save_npz

    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    save_npz(tmp_path / "samples.npz", images, labels=np.array([0, 1, 2, 1, 0]))
    data = build_dataset(str(tmp_path / "samples.npz"), 8)
    assert isinstance(data, SamplesDataset) and len(data) == 5 and data.classes == ["0", "1", "2"]
    pixels, label = data[2]
    assert label == 2 and pixels.shape == (3, 8, 8)
    assert np.array_equal(((pixels + 1) * 127.5).round().byte().permute(1, 2, 0).numpy(), images[2])
    assert build_dataset(str(tmp_path / "samples.npz"), 16)[0][0].shape == (3, 16, 16)
    save_npz(tmp_path / "unlabelled.npz", images)
    with pytest.raises(DatasetError, match="labels"):
        build_dataset(str(tmp_path / "unlabelled.npz"), 8)
