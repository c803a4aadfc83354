"""A classifier used as a judge is checked: near chance on its held-out data, or sorting the
samples into a few classes, its metrics carry a warning."""

from __future__ import annotations

import json

import torch

from argen.checkpoint import save_model
from argen.data import DigitsDataset
from argen.eval import Classifier, ClassifierConfig
from argen.eval.evaluation import Evaluation, EvaluationConfig
from argen.images import to_uint8


def judge(tmp_path, accuracy: float | None, one_class: bool):
    torch.manual_seed(0)
    classifier = Classifier(ClassifierConfig(num_classes=10, resolution=8, channels=(8,), feature_dim=8))
    if one_class:  # predicts class 0 for everything
        with torch.no_grad():
            classifier.head.weight.zero_()
            classifier.head.bias.copy_(torch.arange(10, 0, -1).float())
    model = save_model(classifier, tmp_path / "clf" / "model")
    if accuracy is not None:
        (tmp_path / "clf" / "metrics.json").write_text(json.dumps({"holdout_accuracy": accuracy}))
    return str(model)


def metrics_of(tmp_path, accuracy, one_class, reference=None) -> dict:
    config = EvaluationConfig(
        reference=reference, features="classifier", classifier=judge(tmp_path, accuracy, one_class)
    )
    evaluation = Evaluation(config, 8, torch.device("cpu"))
    data = DigitsDataset(8)
    images, labels = to_uint8(data.images[:200]), data.labels[:200].numpy()
    return evaluation(images, labels)


def test_a_degenerate_judge_is_flagged(tmp_path):
    warnings = metrics_of(tmp_path, 0.1, one_class=True, reference="digits")["warnings"]
    assert any("near chance" in w for w in warnings)  # its own record
    assert any("1 of the 10 requested classes" in w for w in warnings)  # its predictions


def test_a_judge_without_a_record_is_flagged_and_a_good_one_is_not(tmp_path):
    assert "no recorded held-out accuracy" in metrics_of(tmp_path / "a", None, one_class=False)["warnings"][0]
    good = metrics_of(tmp_path / "b", 0.95, one_class=False)
    assert all("near chance" not in w for w in good.get("warnings", []))
