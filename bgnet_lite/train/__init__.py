"""Training, evaluation and prediction for every registered method (chapter 7).

``config`` (TrainConfig), ``loop`` (train, ensure_run), ``evaluate`` (metrics over a split),
``predict`` (mask files), ``runs`` (run folders, checkpoints, JSON).
"""

from bgnet_lite.train.config import LR_SCHEDULES, TrainConfig
from bgnet_lite.train.evaluate import defect_iou_by_type, evaluate, evaluate_run, format_metrics
from bgnet_lite.train.loop import ensure_run, train
from bgnet_lite.train.predict import predict_folder
from bgnet_lite.train.runs import load_run, save_json

__all__ = ["LR_SCHEDULES", "TrainConfig", "defect_iou_by_type", "ensure_run", "evaluate",
           "evaluate_run", "format_metrics", "load_run", "predict_folder", "save_json", "train"]
