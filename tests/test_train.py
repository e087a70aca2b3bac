"""Training for any method and the CLI: checkpoints, resume, evaluation JSON, prediction (tiny,
on CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from bgnet_lite.cli import main as cli_main
from bgnet_lite.cli import train_config
from bgnet_lite.data.io import DataError
from bgnet_lite.data.synth import SynthConfig, write_synth_dataset
from bgnet_lite.methods.bgnet.config import Deviations
from bgnet_lite.train import TrainConfig, defect_iou_by_type, load_run, train
from bgnet_lite.train.loop import make_scheduler
from bgnet_lite.train.runs import load_checkpoint


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "ocd"
    write_synth_dataset(out, SynthConfig(pairs=24, size=64, seed=3, batches=6), progress=False)
    return out


def _config(data, out, options=None, **overrides):
    base = dict(data=str(data), out=str(out), method="bgnet-s5", profile="quick", steps=2,
                batch_size=2, eval_every=2, val_pairs=2, seed=0,
                options={"weights": "none", **(options or {})})
    base.update(overrides)
    return TrainConfig(**base)


def test_train_writes_run_and_is_deterministic(tiny_data, tmp_path):
    first = train(_config(tiny_data, tmp_path / "a"), progress=False)
    train(_config(tiny_data, tmp_path / "b"), progress=False)
    assert first["steps"] == 2
    history_a = json.loads((tmp_path / "a" / "history.json").read_text())
    history_b = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["loss"] for h in history_a["train"]] == [h["loss"] for h in history_b["train"]]
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert {"commit", "device", "profile"} <= set(info["provenance"])
    assert info["train_config"]["seed"] == 0 and info["wall_time_s"] > 0
    assert info["num_classes"] == 1 and info["pretrained"] is False  # binary: one logit
    state = load_checkpoint(tmp_path / "a" / "best.pt")  # weights_only=True inside
    assert all(isinstance(v, torch.Tensor) for v in state["model"].values())


def test_resume_continues_from_last_checkpoint(tiny_data, tmp_path):
    train(_config(tiny_data, tmp_path / "r", steps=2), progress=False)
    resumed = train(_config(tiny_data, tmp_path / "r", steps=4, resume=True), progress=False)
    straight = train(_config(tiny_data, tmp_path / "s", steps=4), progress=False)
    assert resumed["steps"] == 4
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert [h["step"] for h in history["train"]] == [1, 2, 3, 4]
    assert straight["steps"] == 4


def test_match_loss_and_soft_match_train(tiny_data, tmp_path):
    result = train(_config(tiny_data, tmp_path / "m", {"match_loss": 1.0}), progress=False)
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    for entry in history["train"]:  # ground-truth flows were used; total = focal + match
        assert entry["match"] > 0
        assert entry["loss"] == pytest.approx(entry["focal"] + entry["match"], rel=1e-6)
    assert result["steps"] == 2
    plain = json.loads((tmp_path / "m" / "run.json").read_text())
    assert plain["model_config"]["deviations"]["match_loss"] == 1.0
    train(_config(tiny_data, tmp_path / "soft", {"soft_match": True}), progress=False)
    aligned = train(_config(tiny_data, tmp_path / "align",
                            {"match_loss": 1.0, "align_fine_scales": True}), progress=False)
    assert aligned["steps"] == 2
    local = train(_config(tiny_data, tmp_path / "local",
                          {"match_loss": 0.1, "align_fine_scales": True, "local_match_px": 6.0},
                          lr_schedule="cosine"), progress=False)
    assert local["steps"] == 2
    model, _ = load_run(tmp_path / "local")
    assert model.config.deviations == Deviations(match_loss=0.1, align_fine_scales=True,
                                                  local_match_px=6.0)


def test_cli_options_reach_the_model_config(tmp_path):
    config = train_config(
        ["DATA", "--out", str(tmp_path), "--variant", "S4", "--align-fine-scales",
         "--attention-dim", "64", "--soft-match", "--theta", "0.3", "--temperature", "0.05",
         "--local-match-px", "6", "--lr-schedule", "cosine", "--decoder-channels", "8", "8",
         "8", "8", "--mlp-dim", "none"])
    assert config.method == "bgnet-s4" and config.lr_schedule == "cosine"
    # only what was given: every other option keeps the method's default
    assert config.options == {"align_fine_scales": True, "attention_dim": 64,
                              "soft_match": True, "theta": 0.3, "temperature": 0.05,
                              "local_match_px": 6.0, "decoder_channels": (8, 8, 8, 8),
                              "mlp_dim": None}
    default = train_config(["DATA", "--out", str(tmp_path), "--profile", "quick"])
    assert default.method == "bgnet-s5" and default.options == {}
    assert default.steps == 8  # the profile fills what is not given (quick in tests)
    for bad, message in ((["--method", "nope"], "unknown method 'nope'"),
                         (["--variant", "S9"], "variant must be one of"),
                         (["--theta", "2"], "theta is a probability"),
                         (["--variant", "S2", "--align-fine-scales"], "needs matching"),
                         (["--lr-schedule", "cosine", "--focal-alpha", "1.5"], "focal_alpha")):
        with pytest.raises(SystemExit, match=message):
            train_config(["DATA", "--out", str(tmp_path), *bad])


def test_cli_evaluate_and_predict(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(["train", str(tiny_data), "--method", "bgnet-s2", "--out", str(run),
                     "--profile", "quick", "--steps", "2", "--weights", "none"]) == 0
    json_path = tmp_path / "metrics.json"
    assert cli_main(["evaluate", str(run), str(tiny_data), "--split", "test", "--json",
                     str(json_path)]) == 0
    metrics = json.loads(json_path.read_text())
    for key in ("precision", "recall", "f2", "miou", "macc", "params_mb", "split", "profile",
                "seed"):
        assert key in metrics
    assert metrics["split"] == "test" and metrics["profile"] == "quick"
    pairs = tmp_path / "pairs"
    for sub in ("template", "sample"):
        (pairs / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(
        pairs / "template" / "golden.png")
    for name in ("p1", "p2"):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(
            pairs / "sample" / f"{name}.png")
    out = tmp_path / "pred"
    assert cli_main(["predict", str(run), str(pairs), str(out)]) == 0
    for name in ("p1", "p2"):
        mask = np.array(Image.open(out / "mask" / f"{name}.png"))
        assert mask.shape == (80, 96)  # back at the sample's own size
        assert set(np.unique(mask)) <= {0, 255}
        assert (out / "overlay" / f"{name}.png").is_file()


def test_cli_train_help_is_readable(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--variant" in text and "--match-loss" in text and "bgnet-lite methods" in text


def test_focal_alpha_comes_from_the_profile_and_zero_means_off(tmp_path):
    assert _config("d", tmp_path).focal_alpha == 0.9  # quick profile
    assert _config("d", tmp_path, profile="full").focal_alpha == 0.0  # the paper
    assert _config("d", tmp_path, focal_alpha=0.0).focal_alpha == 0.0
    with pytest.raises(ValueError, match="focal_alpha"):
        _config("d", tmp_path, focal_alpha=1.5)


@pytest.mark.parametrize("alpha", [0.0, 0.9])
def test_compute_loss_applies_focal_alpha(tiny_data, alpha):
    from torchvision.ops import sigmoid_focal_loss

    from bgnet_lite.data.folder import PairDataset, collate_pairs
    from bgnet_lite.methods import create_model
    from bgnet_lite.train.distributed import TrainingStep
    from bgnet_lite.train.loop import _training_losses

    torch.manual_seed(0)
    model = create_model("bgnet-s2", weights="none").eval()
    batch = collate_pairs([PairDataset(tiny_data, "train", size=64)[i] for i in range(2)])
    total, focal, extra = _training_losses(TrainingStep(model), batch, alpha)
    logits = model(batch["template"], batch["sample"])
    reference = sigmoid_focal_loss(logits[:, 0], batch["mask"].float(),
                                   alpha=alpha or -1, gamma=2.0, reduction="mean")
    torch.testing.assert_close(focal, reference.detach())
    assert extra == {} and torch.equal(total.detach(), focal)


def test_learning_rate_schedules_against_hand_values():
    def rates(schedule, steps, base=1e-3):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
        scheduler = make_scheduler(optimizer, schedule, steps)
        seen = []
        for _ in range(steps + 1):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return seen

    assert rates("constant", 10) == [1e-3] * 11
    cosine = rates("cosine", 100)
    # cos(0) = 1, cos(pi / 2) = 0, cos(pi) = -1
    assert cosine[0] == pytest.approx(1e-3) and cosine[50] == pytest.approx(5e-4)
    assert cosine[100] == pytest.approx(0.0, abs=1e-15)
    assert rates("cosine", 100, base=2.0)[25] == pytest.approx(1 + math.sqrt(0.5))
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(data="d", out="o", lr_schedule="step")


def test_cosine_schedule_reaches_the_optimizer(tiny_data, tmp_path, monkeypatch):
    seen = []
    original_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    train(_config(tiny_data, tmp_path / "cos", lr=1e-3, lr_schedule="cosine", steps=4),
          progress=False)
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * step / 4)) for step in range(4)]
    assert seen == pytest.approx(expected)


class _BrightIsDefect(torch.nn.Module):
    """A stand-in model: defect wherever the sample's first channel exceeds 0.5 (one logit)."""

    def forward(self, template, sample):
        return (sample[:, :1] - 0.5) * 20


def _pair(kind, sample_rows, mask_rows):
    sample = torch.zeros(3, 4, 4)
    sample[0, sample_rows] = 1.0
    mask = torch.zeros(4, 4, dtype=torch.long)
    mask[mask_rows] = 1
    return {"template": torch.zeros(3, 4, 4), "sample": sample, "mask": mask,
            "meta": {"defect": kind} if kind else {}}


def test_defect_iou_by_type_against_hand_counts():
    pairs = [_pair("scratch", slice(0, 1), slice(0, 2)),  # 4 of 8 true pixels found
             _pair("scratch", slice(0, 2), slice(0, 1)),  # 4 true pixels, 4 false alarms
             _pair("stain", slice(3, 4), slice(3, 4)),  # exact
             _pair(None, slice(0, 0), slice(1, 2))]  # no defect column, nothing found
    batches = [{"template": torch.stack([p["template"] for p in chunk]),
                "sample": torch.stack([p["sample"] for p in chunk]),
                "mask": torch.stack([p["mask"] for p in chunk]),
                "meta": [p["meta"] for p in chunk]} for chunk in (pairs[:3], pairs[3:])]
    model = _BrightIsDefect().train()
    result = defect_iou_by_type(model, batches)
    assert model.training  # restored
    assert list(result) == ["scratch", "stain", "unlabelled"]
    # scratch: intersection 4 + 4, union 8 + 8 over its two pairs; 12 true pixels in 2 pairs
    assert result["scratch"] == {"pairs": 2, "truth_px_per_pair": 6.0, "defect_iou": 0.5}
    assert result["stain"]["defect_iou"] == 1.0
    assert result["unlabelled"]["defect_iou"] == 0.0


def test_a_run_folder_holds_one_run(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    train(_config(tiny_data, run, steps=2), progress=False)
    before = (run / "run.json").read_text()
    common = [str(tiny_data), "--out", str(run), "--profile", "quick", "--steps", "2",
              "--batch-size", "2", "--val-pairs", "2", "--weights", "none"]
    # another method into the same folder: refused, nothing touched
    assert cli_main(["train", *common, "--variant", "S2"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "run.json").read_text() == before
    # resuming with another method: refused, naming the setting
    assert cli_main(["train", *common, "--variant", "S2", "--resume"]) == 2
    assert "method" in capsys.readouterr().err
    # --overwrite replaces it
    assert cli_main(["train", *common, "--variant", "S2", "--overwrite"]) == 0
    assert json.loads((run / "run.json").read_text())["train_config"]["method"] == "bgnet-s2"
    # --resume where nothing was trained: refused, naming the missing file
    assert cli_main(["train", *common, "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()


def test_predict_names_cannot_collide_and_pairs_keep_their_resolution(tiny_data, tmp_path,
                                                                      monkeypatch):
    from bgnet_lite.train import predict as predict_module

    run = tmp_path / "run"
    train(_config(tiny_data, run, method="bgnet-s5", steps=1), progress=False)
    pairs = tmp_path / "pairs"
    rng = np.random.default_rng(1)
    rows = ["template,sample"]
    for sample in ("lot1/a.png", "lot2/a.png", "lot2/b.png", "lot2/b.jpg", "sample/c.png"):
        (pairs / sample).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (72, 88, 3), dtype=np.uint8)).save(pairs / sample)
        rows.append(f"{sample},{sample}")
    (pairs / "pairs.csv").write_text("\n".join(rows) + "\n")
    real_load_run = predict_module.load_run
    seen = {"sizes": [], "models": []}

    def spying_load_run(*args, **kwargs):
        model, info = real_load_run(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda _, inputs: seen["sizes"].append(tuple(inputs[0].shape[-2:])))
        seen["models"].append(model)
        return model, info

    monkeypatch.setattr(predict_module, "load_run", spying_load_run)
    # 72 x 88 has 9 x 11 = 99 cells at 1/8, 64 x 64 has 64
    monkeypatch.setattr(predict_module, "DENSE_MATCH_MAX_CELLS", 80)
    written = predict_module.predict_folder(run, pairs, tmp_path / "out")
    masks = sorted(str(p.relative_to(tmp_path / "out" / "mask"))
                   for p in (tmp_path / "out" / "mask").rglob("*.png"))
    assert written == 5 == len(masks)
    assert masks == ["c.png", "lot1/a.png", "lot2/a.png", "lot2/b.jpg.png", "lot2/b.png.png"]
    assert seen["sizes"] == [(72, 88)] * 5  # the model saw every pair at its own size
    assert seen["models"][0].config.deviations.chunked_matching  # large pair: chunked
    seen["sizes"].clear()
    predict_module.predict_folder(run, pairs, tmp_path / "out64", size=64)
    assert seen["sizes"] == [(64, 64)] * 5
    assert not seen["models"][1].config.deviations.chunked_matching  # 64 x 64: dense
    assert np.array(Image.open(tmp_path / "out64" / "mask" / "c.png")).shape == (72, 88)


def test_a_truncated_checkpoint_is_named(tmp_path):
    path = tmp_path / "best.pt"
    torch.save({"model": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="best.pt: cannot be read as a checkpoint"):
        load_checkpoint(path)


def test_bad_files_anywhere_are_refused_before_anything_is_written(tiny_data, tmp_path,
                                                                   capsys):
    data = tmp_path / "ocd"
    write_synth_dataset(data, SynthConfig(pairs=12, size=64, seed=5, batches=3),
                        progress=False)
    rows = (data / "pairs.csv").read_text().splitlines()
    header = rows[0].split(",")
    by_split = {}
    for row in rows[1:]:
        cells = dict(zip(header, row.split(","), strict=False))
        by_split.setdefault(cells["split"], cells)
    truncated = data / by_split["test"]["sample"]  # a test file: train never reads it
    truncated.write_bytes(truncated.read_bytes()[:100])
    small = data / by_split["val"]["mask"]
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(small)
    run = tmp_path / "run"
    assert cli_main(["train", str(data), "--out", str(run), "--profile", "quick",
                     "--steps", "1", "--weights", "none"]) == 2
    error = capsys.readouterr().err
    assert "2 problem(s)" in error and "nothing was written" in error
    assert str(truncated) in error and str(small) in error
    assert not run.exists()
    out = tmp_path / "pred"
    good_run = tmp_path / "good"
    train(_config(tiny_data, good_run, steps=1), progress=False)
    assert cli_main(["predict", str(good_run), str(data), str(out)]) == 2
    assert not out.exists()
    assert cli_main(["evaluate", str(good_run), str(data), "--split", "test"]) == 2
    assert str(truncated) in capsys.readouterr().err



TRAIN_SCRIPT = """
import os, signal, sys
import torch
from bgnet_lite.train import TrainConfig, loop
torch.set_num_threads(1)
data, out, kill_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
real_save = loop.save_checkpoint
def save_then_maybe_die(path, payload):
    real_save(path, payload)
    if payload["step"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind, like a power cut
loop.save_checkpoint = save_then_maybe_die
loop.train(TrainConfig(data=data, out=out, method="bgnet-s5", profile="quick", steps=12,
                       batch_size=2, eval_every=3, val_pairs=2, seed=0, resume=resume,
                       options={"weights": "none", "match_loss": 0.1}), progress=False)
"""


def test_a_killed_run_resumes_bit_for_bit(tiny_data, tmp_path):
    import signal
    import subprocess
    import sys

    def run(out, kill_at, resume):
        return subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(tiny_data), str(out),
                               str(kill_at), "1" if resume else "0"],
                              capture_output=True, text=True, timeout=600)

    straight = run(tmp_path / "straight", 0, False)
    assert straight.returncode == 0, straight.stderr[-2000:]
    # 8 batches of 2 per epoch: step 9 is the first batch of the second epoch, so replaying
    # the epoch alone would not restore the augmentation's generator
    killed = run(tmp_path / "killed", 9, False)
    assert killed.returncode == -signal.SIGKILL
    resumed = run(tmp_path / "killed", 0, True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name in ("last.pt", "best.pt"):
        expected = load_checkpoint(tmp_path / "straight" / name)["model"]
        found = load_checkpoint(tmp_path / "killed" / name)["model"]
        assert all(torch.equal(expected[key], found[key]) for key in expected), name
    history = [json.loads((tmp_path / folder / "history.json").read_text())
               for folder in ("straight", "killed")]
    assert [h["loss"] for h in history[0]["train"]] == [h["loss"] for h in history[1]["train"]]
    info = json.loads((tmp_path / "killed" / "run.json").read_text())
    assert info["steps"] == 12 and not list((tmp_path / "killed").glob(".*.part"))


def test_monitoring_records_a_denser_curve_and_trains_the_same_model(tiny_data, tmp_path):
    # Swin U-Net drops paths at random: a validation that moved torch's generator (a data
    # loader draws its seed from it) would change every later training step
    settings = dict(method="swin-unet", options={}, steps=6, eval_every=3)
    train(_config(tiny_data, tmp_path / "plain", **settings), progress=False)
    train(_config(tiny_data, tmp_path / "dense", monitor_every=1, **settings), progress=False)
    histories = {name: json.loads((tmp_path / name / "history.json").read_text())
                 for name in ("plain", "dense")}
    assert [v["step"] for v in histories["dense"]["val"]] == [1, 2, 3, 4, 5, 6]
    assert [v["step"] for v in histories["plain"]["val"]] == [3, 6]
    selecting = [v for v in histories["dense"]["val"] if v.get("selects_checkpoint", True)]
    assert selecting == histories["plain"]["val"]
    assert ([h["loss"] for h in histories["dense"]["train"]]
            == [h["loss"] for h in histories["plain"]["train"]])
    for name in ("last.pt", "best.pt"):
        plain = load_checkpoint(tmp_path / "plain" / name)["model"]
        dense = load_checkpoint(tmp_path / "dense" / name)["model"]
        assert all(torch.equal(plain[key], dense[key]) for key in plain), name


def test_evaluate_run_on_evenly_spaced_pairs_against_hand_counts(tiny_data, tmp_path):
    from bgnet_lite.data.folder import PairDataset
    from bgnet_lite.metrics import logits_to_prediction
    from bgnet_lite.train import evaluate_run

    run = tmp_path / "run"
    train(_config(tiny_data, run, method="bgnet-s2"), progress=False)
    model = load_run(run)[0].eval()
    dataset = PairDataset(tiny_data, "train", size=64)
    hits = union = 0
    for index in (0, len(dataset) - 1):  # two pairs: the split's first and last
        pair = dataset[index]
        with torch.no_grad():
            predicted = logits_to_prediction(model(pair["template"][None],
                                                   pair["sample"][None]))[0].numpy() > 0
        truth = pair["mask"].numpy() > 0
        hits += int((predicted & truth).sum())
        union += int((predicted | truth).sum())
    two = evaluate_run(run, tiny_data, split="train", pairs=2)
    assert two["pairs"] == 2 and union > 0
    assert two["defect_iou"] == pytest.approx(hits / union)
    whole = evaluate_run(run, tiny_data, split="train")
    assert evaluate_run(run, tiny_data, split="train", pairs=10_000)["miou"] == whole["miou"]
    assert whole["pairs"] == len(dataset)
    with pytest.raises(ValueError, match="at least 1"):
        evaluate_run(run, tiny_data, split="train", pairs=0)
