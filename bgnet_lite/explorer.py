"""The matching explorer: pick a sample cell, see where it matches in the template (chapter 14).

For one pair and one trained BGNet, :func:`explorer_data` computes, at one attention scale
(1/8 by default), the matching probability 𝒫 (eq. 14) and for every sample cell: its most
probable template cell, whether that pair is a mutual nearest neighbour and reaches θ (eq. 15,
Algorithm 1: a kept match), and the template cell the generator's ground-truth flow gives.

Two views of the same data:

- :func:`explorer_html`, for the static book: a self-contained snippet (images as data URLs,
  𝒫 as bytes, a short script, no library and no kernel).  Clicking or hovering a sample cell
  draws its column of 𝒫 as a heat map over the template and outlines the chosen and the true
  template cells.  Its size is :func:`html_bytes`.
- :func:`live_explorer`, for JupyterLab: sliders for θ and the cell and a choice of model
  (e.g. the attention depth), redrawn by the kernel with :func:`explorer_figure`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import textwrap
import uuid

import numpy as np
import torch
from PIL import Image

from bgnet_lite.methods.bgnet.matching import mutual_nearest_neighbours
from bgnet_lite.supervision import flow_to_cell_targets
from bgnet_lite.viz import to_display, within_one_cell

CELL_PX = 16  # drawn size of one cell in the static view (128 px images at 1/8: 256 px wide)


@torch.no_grad()
def cell_match_prob(model, template: torch.Tensor, sample: torch.Tensor,
                    stride: int = 8) -> tuple[np.ndarray, tuple[int, int]]:
    """𝒫 at one attention scale for one pair, ``[L, S]`` (template cells x sample cells), and
    the feature grid ``(h, w)`` (chapter 14).  ``template``, ``sample``: ``[3, H, W]``."""
    was_training = model.training
    model.eval()
    output = model.matching_only(template[None], sample[None])
    model.train(was_training)
    if stride not in output["matches"]:
        raise ValueError(f"the model matches at 1/{sorted(output['matches'])} only, "
                         f"not at 1/{stride}")
    feat_hw = tuple(output["sample_feats"][stride].shape[-2:])
    return output["matches"][stride].match_prob[0].float().numpy(), feat_hw


def match_decisions(match_prob: np.ndarray, theta: float) -> dict:
    """Per sample cell: the most probable template cell, its 𝒫, mutual or not, and kept or
    not (mutual and 𝒫 ≥ θ: Algorithm 1 with eq. 15) (chapter 14).  ``match_prob`` ``[L, S]``."""
    prob = torch.as_tensor(match_prob)[None]  # [1, L, S]
    mutual, _ = mutual_nearest_neighbours(prob, 0.0)  # θ = 0: the mutual pairs alone
    best_prob, best = prob[0].max(dim=0)  # [S]
    mutual = (mutual[0] >= 0).numpy()
    best_prob = best_prob.numpy()
    # eq. 15 keeps a mutual pair whose 𝒫 reaches θ, as mutual_nearest_neighbours does
    return {"best": best.numpy(), "best_prob": best_prob, "mutual": mutual,
            "kept": mutual & (best_prob >= theta)}


def explorer_data(model, item: dict, theta: float | None = None, stride: int = 8,
                  title: str = "", matched: tuple | None = None) -> dict:
    """Everything both views draw for one pair (chapter 14).  ``item``: a dataset item with
    "template", "sample" ``[3, H, W]`` and, if known, "flow" (the ground truth) and "mask";
    ``theta`` defaults to the model's; ``matched``: :func:`cell_match_prob`'s result for this
    model and pair, when already computed."""
    theta = model.config.theta if theta is None else float(theta)
    match_prob, feat_hw = matched or cell_match_prob(model, item["template"], item["sample"],
                                                     stride)
    truth = np.full(match_prob.shape[1], -1)
    if item.get("flow") is not None:
        image_hw = tuple(item["sample"].shape[-2:])
        truth = flow_to_cell_targets(item["flow"][None], image_hw, feat_hw)[0].numpy()
    mask = item.get("mask")
    return {"title": title, "stride": stride, "theta": theta, "grid": feat_hw,
            "template": to_display(item["template"]), "sample": to_display(item["sample"]),
            "mask": None if mask is None else mask.numpy() > 0,
            "match_prob": match_prob, "truth": truth, **match_decisions(match_prob, theta)}


def describe_cell(data: dict, cell: int) -> str:
    """One sample cell's matching in words, as both views print it (chapter 14)."""
    width = data["grid"][1]
    best, truth = int(data["best"][cell]), int(data["truth"][cell])
    where = f"sample cell (row {cell // width}, col {cell % width})"
    line = (f"{where}: most probable template cell (row {best // width}, col {best % width}), "
            f"𝒫 = {data['best_prob'][cell]:.3g}; "
            f"{'mutual' if data['mutual'][cell] else 'not mutual'}, "
            f"{'kept' if data['kept'][cell] else 'dropped'} at θ = {data['theta']:g}. ")
    if truth < 0:
        return line + "Ground truth: none (new or undefined background)."
    agrees = "agrees" if within_one_cell(best, truth, width) else "does not agree"
    return line + (f"Ground truth: (row {truth // width}, col {truth % width}); "
                   f"the choice {agrees} (within one cell).")


# ----------------------------------------------------------------------------- static view


def _as_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)  # to_display's [0, 1] floats


def _png_data_url(image: np.ndarray) -> str:
    image = _as_uint8(image)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _payload(data: dict) -> dict:
    """The JSON one pair needs: each sample cell's column of 𝒫 scaled to its maximum, as one
    byte per template cell (a heat map needs no more), and the decisions as lists."""
    column_max = data["match_prob"].max(axis=0, keepdims=True)  # [1, S]
    scaled = np.round(255 * data["match_prob"] / np.maximum(column_max, 1e-12))
    columns = scaled.T.astype(np.uint8)  # [S, L]: one row per sample cell
    sample = _as_uint8(data["sample"])
    if data["mask"] is not None:  # the true defect, tinted, so the reader knows where to click
        sample = sample.copy()
        sample[data["mask"]] = (0.5 * sample[data["mask"]] + [127, 0, 127]).astype(np.uint8)
    return {"title": data["title"], "grid": list(data["grid"]), "stride": data["stride"],
            "theta": data["theta"], "template": _png_data_url(data["template"]),
            "sample": _png_data_url(sample),
            "prob": base64.b64encode(columns.tobytes()).decode("ascii"),
            "best": data["best"].tolist(),
            "best_prob": [float(f"{value:.3g}") for value in data["best_prob"]],
            "mutual": data["mutual"].astype(int).tolist(),
            "kept": data["kept"].astype(int).tolist(), "truth": data["truth"].tolist()}


_SCRIPT = """
(function () {
  const root = document.getElementById(ROOT_ID);
  const pairs = JSON.parse(root.querySelector("script.bgnet-explorer-data").textContent);
  const px = CELL_PX;
  const sampleCanvas = root.querySelector("canvas.bgnet-sample");
  const templateCanvas = root.querySelector("canvas.bgnet-template");
  const readout = root.querySelector(".bgnet-readout");
  const picker = root.querySelector("select");
  const images = pairs.map(function (pair) {
    const load = function (url) { const image = new Image(); image.src = url; return image; };
    return {template: load(pair.template), sample: load(pair.sample)};
  });
  let pairIndex = 0, cell = -1;

  function outline(context, index, width, colour, dash) {
    context.save();
    context.strokeStyle = colour; context.lineWidth = 3; context.setLineDash(dash || []);
    context.strokeRect((index % width) * px + 1.5, Math.floor(index / width) * px + 1.5,
                       px - 3, px - 3);
    context.restore();
  }

  function rc(index, width) {
    return "(row " + Math.floor(index / width) + ", col " + (index % width) + ")";
  }

  function draw() {
    const pair = pairs[pairIndex], width = pair.grid[1], height = pair.grid[0];
    const cells = width * height, prob = atob(pair.prob);
    for (const canvas of [sampleCanvas, templateCanvas]) {
      canvas.width = width * px; canvas.height = height * px;
    }
    const sampleContext = sampleCanvas.getContext("2d");
    const templateContext = templateCanvas.getContext("2d");
    sampleContext.imageSmoothingEnabled = false;
    templateContext.imageSmoothingEnabled = false;
    sampleContext.drawImage(images[pairIndex].sample, 0, 0, width * px, height * px);
    templateContext.drawImage(images[pairIndex].template, 0, 0, width * px, height * px);
    // kept matches: a small green dot on their sample cell
    sampleContext.fillStyle = "rgba(0, 200, 0, 0.9)";
    pair.kept.forEach(function (kept, index) {
      if (kept) {
        sampleContext.beginPath();
        const x = (index % width + 0.5) * px, y = (Math.floor(index / width) + 0.5) * px;
        sampleContext.arc(x, y, 2, 0, 2 * Math.PI);
        sampleContext.fill();
      }
    });
    if (cell < 0) {
      readout.textContent = "Click or hover a cell of the sample.";
      root.dataset.sampleCell = ""; root.dataset.templateCell = "";
      return;
    }
    for (let index = 0; index < cells; index++) {  // this cell's column of P, scaled to its max
      const value = prob.charCodeAt(cell * cells + index) / 255;
      if (value > 0.02) {
        templateContext.fillStyle = "rgba(255, 60, 0, " + (0.75 * value).toFixed(3) + ")";
        templateContext.fillRect((index % width) * px, Math.floor(index / width) * px, px, px);
      }
    }
    const best = pair.best[cell], truth = pair.truth[cell];
    outline(sampleContext, cell, width, "#00e5ff");
    if (truth >= 0) { outline(templateContext, truth, width, "#ffffff", [4, 3]); }
    outline(templateContext, best, width, pair.kept[cell] ? "#00c800" : "#ffd400");
    const agrees = truth >= 0 && Math.abs(Math.floor(best / width) - Math.floor(truth / width)) <= 1
      && Math.abs(best % width - truth % width) <= 1;
    readout.textContent = "sample cell " + rc(cell, width) + ": most probable template cell "
      + rc(best, width) + ", 𝒫 = " + pair.best_prob[cell].toPrecision(3) + "; "
      + (pair.mutual[cell] ? "mutual" : "not mutual") + ", "
      + (pair.kept[cell] ? "kept" : "dropped") + " at θ = " + pair.theta + ". "
      + (truth < 0 ? "Ground truth: none (new or undefined background)."
         : "Ground truth: " + rc(truth, width) + "; the choice "
           + (agrees ? "agrees" : "does not agree") + " (within one cell).");
    root.dataset.sampleCell = String(cell); root.dataset.templateCell = String(best);
  }

  function pick(event) {
    const pair = pairs[pairIndex], box = sampleCanvas.getBoundingClientRect();
    const col = Math.floor((event.clientX - box.left) / box.width * pair.grid[1]);
    const row = Math.floor((event.clientY - box.top) / box.height * pair.grid[0]);
    if (col >= 0 && col < pair.grid[1] && row >= 0 && row < pair.grid[0]) {
      cell = row * pair.grid[1] + col; draw();
    }
  }
  sampleCanvas.addEventListener("click", pick);
  sampleCanvas.addEventListener("mousemove", function (event) {
    if (event.buttons === 0 && !root.dataset.locked) { pick(event); }
  });
  sampleCanvas.addEventListener("click", function () { root.dataset.locked = "1"; });
  sampleCanvas.addEventListener("mouseleave", function () { delete root.dataset.locked; });
  if (picker) {
    picker.addEventListener("change", function () { pairIndex = Number(picker.value); draw(); });
  }
  Promise.all(images.flatMap(function (pair) {
    return [pair.template, pair.sample].map(function (image) {
      return image.decode ? image.decode().catch(function () {}) : Promise.resolve();
    });
  })).then(function () { root.dataset.ready = "1"; draw(); });
})();
"""


def explorer_html(pairs: list[dict], cell_px: int = CELL_PX) -> str:
    """The static explorer for one or more pairs (:func:`explorer_data` dicts) as one HTML
    snippet that needs no kernel, library or network (chapter 14).  The root element's
    ``data-sample-cell`` and ``data-template-cell`` attributes name the picked sample cell and
    its most probable template cell, so a browser test can read them."""
    if not pairs:
        raise ValueError("need at least one pair")
    root_id = "bgnet-explorer-" + uuid.uuid4().hex[:8]
    payload = json.dumps([_payload(data) for data in pairs], separators=(",", ":"))
    payload = payload.replace("</", "<\\/")  # nothing in it may close the script element
    picker = ""
    if len(pairs) > 1:
        options = "".join(f'<option value="{index}">{html.escape(data["title"])}</option>'
                          for index, data in enumerate(pairs))
        picker = f'<label>pair: <select>{options}</select></label> '
    canvas_style = ("width:100%;max-width:320px;height:auto;image-rendering:pixelated;"
                    "cursor:crosshair")
    figure = (
        f'<div style="flex:1;min-width:200px"><div>{{}}</div>'
        f'<canvas class="{{}}" style="{canvas_style}"></canvas></div>')
    legend = ("cyan: the picked sample cell; green dots: sample cells with a kept match. "
              "Template: orange heat = the picked cell's column of 𝒫 (scaled to its maximum); "
              "solid box = most probable template cell (green if kept, yellow if dropped); "
              "dashed white = ground-truth cell. Purple tint on the sample = true defect.")
    script = _SCRIPT.replace("ROOT_ID", json.dumps(root_id)).replace("CELL_PX", str(cell_px))
    return (
        f'<div id="{root_id}" class="bgnet-explorer" style="font-size:0.9em;max-width:100%">'
        f'{picker}'
        f'<div style="display:flex;gap:12px;flex-wrap:wrap">'
        + figure.format("sample (click a cell)", "bgnet-sample")
        + figure.format("template", "bgnet-template")
        + '</div>'
        f'<p class="bgnet-readout" style="min-height:3em;margin:6px 0"></p>'
        f'<p style="color:#555;margin:0">{html.escape(legend)}</p>'
        f'<script type="application/json" class="bgnet-explorer-data">{payload}</script>'
        f'<script>{script}</script></div>')


def html_bytes(snippet: str) -> int:
    """What the static explorer adds to its page, in bytes (chapter 14)."""
    return len(snippet.encode("utf-8"))


# ----------------------------------------------------------------------------- live view


def explorer_figure(data: dict, cell: int):
    """The explorer's picture for one sample cell, drawn with matplotlib (chapter 14)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    height, width = data["grid"]
    image_h, image_w = data["sample"].shape[:2]
    cell_h, cell_w = image_h / height, image_w / width
    figure, (sample_axis, template_axis) = plt.subplots(1, 2, figsize=(9, 4.8))

    def box(axis, index, colour, style="-"):
        axis.add_patch(Rectangle(((index % width) * cell_w - 0.5, (index // width) * cell_h - 0.5),
                                 cell_w, cell_h, fill=False, edgecolor=colour, linewidth=2.5,
                                 linestyle=style))

    sample_axis.imshow(data["sample"])
    if data["mask"] is not None:
        sample_axis.contour(data["mask"], levels=[0.5], colors="magenta", linewidths=1)
    box(sample_axis, cell, "cyan")
    sample_axis.set_title("sample: picked cell (cyan)", fontsize=10)
    column = data["match_prob"][:, cell].reshape(height, width)
    template_axis.imshow(data["template"])
    template_axis.imshow(column / max(column.max(), 1e-12), cmap="Oranges", alpha=0.6,
                         extent=(-0.5, image_w - 0.5, image_h - 0.5, -0.5), vmin=0, vmax=1)
    if data["truth"][cell] >= 0:
        box(template_axis, int(data["truth"][cell]), "white", "--")
    box(template_axis, int(data["best"][cell]), "green" if data["kept"][cell] else "gold")
    template_axis.set_title(r"template: $\mathcal{P}$ column, best cell, truth (dashed)",
                            fontsize=10)
    for axis in (sample_axis, template_axis):
        axis.set_xticks([])
        axis.set_yticks([])
    # matplotlib's fonts lack the script P: its mathtext draws the same letter
    words = describe_cell(data, cell).replace("𝒫", r"$\mathcal{P}$")
    figure.suptitle("\n".join(textwrap.wrap(words, 110)), fontsize=9)
    figure.tight_layout()
    plt.close(figure)
    return figure


def live_explorer(models: dict, item: dict, thetas=None, stride: int = 8):
    """The explorer with a kernel (JupyterLab): a model choice (e.g. one per attention depth),
    θ, and the sample cell's row and column (chapter 14).  ``models``: label -> BGNet."""
    import ipywidgets

    from bgnet_lite.widgets import frame_png

    if not models:
        raise ValueError("need at least one model")
    thetas = [round(value, 2) for value in (thetas or np.arange(0.0, 0.95, 0.05))]
    cached = {label: cell_match_prob(model, item["template"], item["sample"], stride)
              for label, model in models.items()}
    first_label, first_model = next(iter(models.items()))
    first = explorer_data(first_model, item, stride=stride, matched=cached[first_label])
    height, width = first["grid"]
    model_choice = ipywidgets.Dropdown(options=list(models), description="model")
    theta = ipywidgets.SelectionSlider(options=thetas, value=min(thetas, key=lambda t: abs(
        t - first["theta"])), description="θ")
    row = ipywidgets.IntSlider(value=height // 2, min=0, max=height - 1, description="row")
    col = ipywidgets.IntSlider(value=width // 2, min=0, max=width - 1, description="col")
    image = ipywidgets.Image(format="png", layout={"max_width": "100%", "height": "auto"})

    def redraw(_change=None) -> None:
        match_prob, _ = cached[model_choice.value]
        data = {**first, "theta": theta.value, "match_prob": match_prob,
                **match_decisions(match_prob, theta.value)}
        image.value = frame_png(explorer_figure(data, row.value * width + col.value))

    for control in (model_choice, theta, row, col):
        control.observe(redraw, names="value")
    redraw()
    box = ipywidgets.VBox([ipywidgets.HBox([model_choice, theta]),
                           ipywidgets.HBox([row, col]), image])
    box.controls = {"model": model_choice, "theta": theta, "row": row, "col": col}
    box.image = image
    return box
