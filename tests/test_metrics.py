"""Split-level confusion-matrix metrics against scikit-learn."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    fbeta_score,
    jaccard_score,
    precision_score,
    recall_score,
)

from bgnet_lite.metrics import (
    ConfusionMatrix,
    average_precision,
    defect_scores,
    logits_to_prediction,
)


def random_batches(rng, num_classes, absent=(), batches=4, shape=(2, 9, 13)):
    """Random targets/predictions in several batches; classes in ``absent`` never occur."""
    allowed = np.array([c for c in range(num_classes) if c not in absent])
    pairs = []
    for _ in range(batches):
        target = rng.choice(allowed, size=shape)
        # predictions agree with the target 60 % of the time, so the metrics are not trivial
        pred = np.where(rng.random(shape) < 0.6, target, rng.choice(allowed, size=shape))
        pairs.append((pred, target))
    return pairs


def accumulate(num_classes, pairs):
    metric = ConfusionMatrix(num_classes)
    for pred, target in pairs:
        metric.update(torch.from_numpy(pred), torch.from_numpy(target))
    return metric


def flat(pairs):
    pred = np.concatenate([p.ravel() for p, _ in pairs])
    target = np.concatenate([t.ravel() for _, t in pairs])
    return pred, target


def test_binary_against_sklearn():
    rng = np.random.default_rng(0)
    pairs = random_batches(rng, 2)
    metric = accumulate(1, pairs)  # num_classes = 1 means binary, as in BGNetConfig
    pred, target = flat(pairs)
    assert np.array_equal(metric.matrix.numpy(), confusion_matrix(target, pred, labels=[0, 1]))
    result = metric.compute()
    assert result["precision"] == pytest.approx(precision_score(target, pred))
    assert result["recall"] == pytest.approx(recall_score(target, pred))
    assert result["f2"] == pytest.approx(fbeta_score(target, pred, beta=2))
    iou = jaccard_score(target, pred, average=None, labels=[0, 1])
    assert result["iou"] == pytest.approx(list(iou))
    assert result["miou"] == pytest.approx(iou.mean())
    assert result["miou_defect"] == pytest.approx(iou[1])
    assert result["defect_iou"] == pytest.approx(iou[1])
    per_class_recall = recall_score(target, pred, average=None, labels=[0, 1])
    assert result["accuracy"] == pytest.approx(list(per_class_recall))
    assert result["macc"] == pytest.approx(balanced_accuracy_score(target, pred))
    assert result["macc_defect"] == pytest.approx(per_class_recall[1])
    assert result["pixel_accuracy"] == pytest.approx(accuracy_score(target, pred))


def test_multiclass_with_absent_class_against_sklearn():
    rng = np.random.default_rng(1)
    num_classes, absent = 7, 5
    pairs = random_batches(rng, num_classes, absent=(absent,))
    metric = accumulate(num_classes, pairs)
    pred, target = flat(pairs)
    labels = list(range(num_classes))
    assert np.array_equal(metric.matrix.numpy(), confusion_matrix(target, pred, labels=labels))
    result = metric.compute()

    # defect (any class != 0) versus background, eq. 17-19
    defect_target, defect_pred = target != 0, pred != 0
    assert result["precision"] == pytest.approx(precision_score(defect_target, defect_pred))
    assert result["recall"] == pytest.approx(recall_score(defect_target, defect_pred))
    assert result["f2"] == pytest.approx(fbeta_score(defect_target, defect_pred, beta=2))
    assert result["defect_iou"] == pytest.approx(jaccard_score(defect_target, defect_pred))

    # per-class IoU; the absent class (in neither target nor prediction) is NaN and skipped
    iou = jaccard_score(target, pred, average=None, labels=labels, zero_division=0)
    present = [c for c in labels if c != absent]
    assert math.isnan(result["iou"][absent])
    assert [result["iou"][c] for c in present] == pytest.approx(list(iou[present]))
    assert result["miou"] == pytest.approx(iou[present].mean())
    assert result["miou_defect"] == pytest.approx(iou[[c for c in present if c != 0]].mean())

    recall = recall_score(target, pred, average=None, labels=labels, zero_division=np.nan)
    assert math.isnan(result["accuracy"][absent]) and math.isnan(recall[absent])
    assert result["macc"] == pytest.approx(np.nanmean(recall))
    assert result["macc"] == pytest.approx(balanced_accuracy_score(target, pred))
    assert result["macc_defect"] == pytest.approx(np.nanmean(recall[1:]))
    assert result["pixel_accuracy"] == pytest.approx(accuracy_score(target, pred))


def test_class_only_predicted_has_iou_zero_and_no_accuracy():
    metric = ConfusionMatrix(3)
    metric.update(torch.tensor([[0, 2, 1, 1]]), torch.tensor([[0, 1, 1, 0]]))
    result = metric.compute()
    # class 2: predicted once, never true -> IoU 0 / (0 + 1 + 0) = 0, recall undefined
    assert result["iou"][2] == 0.0
    assert math.isnan(result["accuracy"][2])
    # by hand: class 0 TP 1 FP 0 FN 1 -> 1/2; class 1 TP 1 FP 1 FN 1 -> 1/3
    assert result["iou"][:2] == pytest.approx([1 / 2, 1 / 3])
    assert result["miou"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)


def test_empty_and_defect_free_splits_give_nan_without_warnings():
    metric = ConfusionMatrix(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = metric.compute()
        assert all(math.isnan(result[key]) for key in ("precision", "recall", "f2", "miou"))
        background = torch.zeros(1, 4, 4, dtype=torch.long)
        metric.update(background, background)
        result = metric.compute()
    assert math.isnan(result["precision"]) and math.isnan(result["f2"])
    assert result["miou"] == 1.0 and result["pixel_accuracy"] == 1.0


def test_reset_and_input_checks():
    metric = ConfusionMatrix(3)
    metric.update(torch.tensor([[1]]), torch.tensor([[2]]))
    metric.reset()
    assert metric.matrix.sum() == 0
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        metric.update(torch.tensor([[3]]), torch.tensor([[0]]))
    with pytest.raises(ValueError, match="integer class ids"):
        metric.update(torch.tensor([[0.7]]), torch.tensor([[0]]))
    with pytest.raises(ValueError, match="differ in shape"):
        metric.update(torch.tensor([[0, 1]]), torch.tensor([[0]]))


def test_logits_to_prediction():
    torch.manual_seed(0)
    binary = torch.randn(2, 1, 5, 5)
    expected = (1 / (1 + np.exp(-binary.numpy()[:, 0])) > 0.5).astype(np.int64)
    assert np.array_equal(logits_to_prediction(binary).numpy(), expected)
    multi = torch.randn(2, 7, 5, 5)
    assert np.array_equal(logits_to_prediction(multi).numpy(), multi.numpy().argmax(axis=1))
    assert logits_to_prediction(multi).dtype == torch.int64


def test_average_precision_against_sklearn_with_ties():
    rng = np.random.default_rng(0)
    truth = rng.random(500) < 0.1
    # rounded scores: many ties, as a thresholding baseline's saturated logits give
    scores = np.round(np.clip(0.3 * truth + rng.random(500) * 0.8, 0, 1), 1)
    assert math.isclose(average_precision(scores, truth),
                        average_precision_score(truth, scores), rel_tol=1e-12)
    continuous = 0.5 * truth + rng.random(500)
    assert math.isclose(average_precision(continuous, truth),
                        average_precision_score(truth, continuous), rel_tol=1e-12)
    assert math.isnan(average_precision(scores, np.zeros(500, bool)))


def test_defect_scores_binary_and_multiclass():
    binary = torch.tensor([[[[0.0, 2.0]]]])  # [1, 1, 1, 2]
    assert torch.allclose(defect_scores(binary), torch.sigmoid(binary[:, 0]))
    logits = torch.randn(2, 4, 3, 5)
    background = torch.exp(logits[:, 0]) / torch.exp(logits).sum(dim=1)
    assert torch.allclose(defect_scores(logits), 1 - background, atol=1e-6)

