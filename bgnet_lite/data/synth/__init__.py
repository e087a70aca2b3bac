"""Synthetic OCD-like template/sample pairs with exact masks and correspondences
(chapter 1, "The problem").

The paper's OCDs dataset (optical communication devices: a base, pins, SMD components and
thin gold bonding "jump" wires) is private, so we render a substitute.  Every *batch* is one
device layout with ONE defect-free template; every *sample* of the batch is another device of
the same type photographed again:

* **background spatial variation** -- a global similarity (shift, rotation, scale about the
  image centre), a small displacement of every component, bonding wires with jittered control
  points.  One knob, ``SynthConfig.variation``, scales all of it (0 = perfectly aligned);
* **texture variation** -- colour/brightness/contrast change, an illumination gradient and a
  partly re-drawn surface grain (all scaled by ``SynthConfig.texture_variation``) plus sensor
  noise (``noise_std``, on template and sample);
* exactly **one defect** with an exact pixel mask in the sample frame (one of
  :data:`DEFECT_TYPES`): ``base_crush`` (dark dented blob on the plate), ``base_scratch``
  (thin line on the plate), ``contamination`` (stain on a component), ``breakage`` (a
  chipped-off corner: the mask is the missing piece and its fracture rim) and ``wire_count``
  (``params["wire_defect"]`` says "extra": mask = the extra wire, or "missing": mask = where
  the wire would be in the sample frame).  A mask pixel is one whose defect coverage, after
  the warp, is >= 0.5 and not hidden under a component; wires drawn over a defect do not cut
  its mask (an annotator paints a stain or a chip as one region).

How a sample is made (scene coordinates = template pixel coordinates): the sample *scene* is
rendered on a padded canvas with displaced components and jittered wires, then the global
similarity is applied by inverse mapping (sample pixel -> scene point -> bilinear sample).  So
the ground-truth correspondence is exact: a sample pixel ``q`` sees scene point
``p = c + R(-angle) (q - c - shift) / scale`` (``c`` the image centre) and the template shows
the same background point at ``p - d`` where ``d`` is the displacement of the component under
``p`` (0 on the base).

Flow conventions (io.py's ``flow`` column, written with stride 4):

* NaN where the template does not show that background point: outside the template image
  after the warp, and where it is hidden in the template (base uncovered by a displaced
  component; a component point covered by another component in the template);
* on wires the flow is that of the base/component under the wire (wires are thin and move
  independently: they are treated as "texture", not as background geometry);
* on the defect the flow is that of the defect-free sample (e.g. a chipped-off piece of a
  component maps to where that piece is in the template).

Angles: ``angle_deg > 0`` turns the template content clockwise on screen (y points down).

Deliberate choices (the paper has no such generator; its OCDs data is real):

* ``max_shift`` defaults to 0.09 * size, not 0.08: the median misalignment must stay above
  size / 16 (one 1/8 feature cell at 128 px); 0.08 gives 0.065 * size, too close;
* component displacements are rounded to whole pixels, so that a moved component is the
  same pixels as in the template and the flow on it is exact;
* the defect-type proportions follow the paper's OCDs counts (Sec. 4.1.3).

Modules: ``config`` (SynthConfig, defect schedule, splits), ``raster`` (anti-aliased drawing),
``device`` (components, pins, wires), ``scene`` (the batch layout and template), ``geometry``
(similarity, flow, resampling), ``defects``, ``pair`` (one sample) and ``writer`` (the folder).
"""

from .config import (
    DEFECT_TYPES,
    PAPER_DEFECT_COUNTS,
    SynthConfig,
    SynthPair,
    batch_splits,
    defect_counts,
    defect_schedule,
    inbatch_splits,
)
from .pair import generate_pair
from .scene import render_template
from .writer import write_synth_dataset

__all__ = [
    "DEFECT_TYPES",
    "PAPER_DEFECT_COUNTS",
    "SynthConfig",
    "SynthPair",
    "batch_splits",
    "defect_counts",
    "defect_schedule",
    "generate_pair",
    "inbatch_splits",
    "render_template",
    "write_synth_dataset",
]
