"""Registration of a template onto its sample: keypoints, RANSAC homography, ECC refinement
(chapter 9, "Beyond the paper").

Source: the textbook automated optical inspection (AOI) pipeline, "golden template" comparison
after image registration; the building blocks are OpenCV's: SIFT (Lowe, IJCV 2004), ORB
(Rublee et al., ICCV 2011) or AKAZE (Alcantarilla et al., BMVC 2013; in OpenCV 4, moved to
opencv-contrib in OpenCV 5) keypoints, Lowe's ratio test, RANSAC homography
(``cv2.findHomography``), ECC refinement (Evangelidis & Psarakis, TPAMI 2008,
``cv2.findTransformECC``).  The paper (BGNet) does not compare against it.

GUESSED (no source fixes them): the ratio 0.8, at least 10 RANSAC inliers, the RANSAC
reprojection threshold 3 px, ECC's Gaussian pre-blur of 5 px and 50 iterations, ORB's patch
size shrunk on small images (31 px from 124 px on), and two guards against the repetitive
texture of boards (wires, pads, grain), on which RANSAC often accepts a wrong homography with
many "inliers": a homography is refused unless it is a near-rigid motion (``plausible``:
scale and shear within 25 %, perspective below 30 % across the image; ECC on boards whose
components move independently drifts to some perspective, and 10 % refused most ECC results),
and a refused homography falls back to a RANSAC similarity (``cv2.estimateAffinePartial2D``,
4 degrees of freedom, far harder to fit to wrong matches) before the identity.  On our
synthetic pairs at 128 px this fallback halves the pairs left unregistered; SIFT beats ORB
there (ORB's keypoints are coarse on small images), hence SIFT is the default detector.

Convention: the homography ``H`` maps template pixel coordinates to sample pixel coordinates,
so ``cv2.warpPerspective(template, H, (W, H))`` lays the template over the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DETECTORS = ("sift", "orb", "akaze")
RATIO = 0.8  # Lowe's ratio test
MIN_INLIERS = 10  # fewer RANSAC inliers: the estimate is not trusted
RANSAC_REPROJ_PX = 3.0
ECC_BLUR = 5  # Gaussian pre-blur of ECC (smooths the objective on sharp board edges)
ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
MAX_SCALE_CHANGE = 0.25  # singular values of the linear part within [0.75, 1.25]
MAX_PERSPECTIVE = 0.3  # change of the perspective denominator across the image


@dataclass
class Registration:
    """A homography (template -> sample pixel coordinates) and how it was found (chapter 9).

    status: "ransac+ecc" (keypoints, then ECC), "ransac" (ECC off or failed), "identity+ecc"
    (no trusted keypoint estimate; ECC started from the identity), "identity" (nothing
    worked).  keypoint_model: "homography", "similarity" (the fallback) or "none"."""

    homography: np.ndarray  # [3, 3] float64
    status: str
    keypoint_model: str
    inliers: int  # RANSAC inliers of the keypoint estimate (0 when none)


def to_grey_uint8(image: np.ndarray) -> np.ndarray:
    """[H, W, C] float in [0, 1] (C = 1 or 3) -> [H, W] uint8 greyscale (chapter 9)."""
    image8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    if image8.shape[2] == 3:
        return cv2.cvtColor(image8, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image8[..., 0])


def _detector(name: str, image_size: int):
    """The keypoint detector and the norm its descriptors are compared with."""
    if name == "sift":
        return cv2.SIFT_create(nfeatures=2000), cv2.NORM_L2
    if name == "orb":
        # ORB's descriptor needs its patch inside the image: shrink it on small images
        patch = int(np.clip(image_size // 4, 9, 31))
        orb = cv2.ORB_create(nfeatures=2000, edgeThreshold=patch, patchSize=patch)
        return orb, cv2.NORM_HAMMING
    if name == "akaze":
        if not hasattr(cv2, "AKAZE_create"):
            raise ValueError(f"OpenCV {cv2.__version__} has no AKAZE (OpenCV 5 moved it to "
                             "opencv-contrib-python); use detector 'sift' or 'orb'")
        return cv2.AKAZE_create(), cv2.NORM_HAMMING  # MLDB: a binary descriptor
    raise ValueError(f"detector must be one of {DETECTORS}, got {name!r}")


def plausible(homography: np.ndarray, image_size: int) -> bool:
    """Whether a homography is a near-rigid board motion: singular values of its linear part
    within ``MAX_SCALE_CHANGE`` of 1, perspective below ``MAX_PERSPECTIVE`` (chapter 9)."""
    if not np.isfinite(homography).all() or abs(homography[2, 2]) < 1e-12:
        return False
    homography = homography / homography[2, 2]
    singular = np.linalg.svd(homography[:2, :2], compute_uv=False)
    near_rigid = 1 - MAX_SCALE_CHANGE < singular.min() <= singular.max() < 1 + MAX_SCALE_CHANGE
    return bool(near_rigid and np.abs(homography[2, :2]).sum() * image_size < MAX_PERSPECTIVE)


def matched_points(template: np.ndarray, sample: np.ndarray,
                   detector: str = "sift") -> tuple[np.ndarray, np.ndarray]:
    """Keypoint matches passing Lowe's ratio test (chapter 9): template points [M, 2] and
    sample points [M, 2], float32 (x, y).  template, sample: [H, W] uint8."""
    finder, norm = _detector(detector, min(template.shape))
    template_points, template_desc = finder.detectAndCompute(template, None)
    sample_points, sample_desc = finder.detectAndCompute(sample, None)
    if template_desc is None or sample_desc is None or len(sample_points) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    good = [pair[0] for pair in cv2.BFMatcher(norm).knnMatch(template_desc, sample_desc, k=2)
            if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance]
    source = np.float32([template_points[m.queryIdx].pt for m in good]).reshape(-1, 2)
    target = np.float32([sample_points[m.trainIdx].pt for m in good]).reshape(-1, 2)
    return source, target


def keypoint_homography(template: np.ndarray, sample: np.ndarray,
                        detector: str = "sift") -> tuple[np.ndarray | None, str, int]:
    """RANSAC estimate template -> sample from keypoint matches (chapter 9): the homography
    when ``plausible`` with >= ``MIN_INLIERS`` inliers, else the same for a RANSAC
    similarity, else None.  Returns (homography [3, 3] or None, model name, inliers)."""
    source, target = matched_points(template, sample, detector)
    if len(source) < MIN_INLIERS:
        return None, "none", 0
    size = max(template.shape)
    homography, inlier_mask = cv2.findHomography(source, target, cv2.RANSAC, RANSAC_REPROJ_PX)
    if homography is not None and inlier_mask.sum() >= MIN_INLIERS and plausible(homography,
                                                                                  size):
        return homography / homography[2, 2], "homography", int(inlier_mask.sum())
    similarity, inlier_mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_REPROJ_PX)
    if similarity is not None and inlier_mask.sum() >= MIN_INLIERS:
        homography = np.vstack([similarity, [0.0, 0.0, 1.0]])  # [3, 3]
        if plausible(homography, size):
            return homography, "similarity", int(inlier_mask.sum())
    return None, "none", 0


def ecc_refine(template: np.ndarray, sample: np.ndarray,
               homography: np.ndarray) -> np.ndarray | None:
    """ECC (MOTION_HOMOGRAPHY) refinement of ``homography`` (template -> sample) on
    Gaussian-blurred images; None when ECC fails to converge or drifts to an implausible
    homography (chapter 9).  template, sample: [H, W] uint8."""
    # ECC warps its second image onto its first: sample coordinates -> template coordinates
    warp = np.linalg.inv(homography).astype(np.float32)
    try:
        _, warp = cv2.findTransformECC(sample.astype(np.float32), template.astype(np.float32),
                                       warp, cv2.MOTION_HOMOGRAPHY, ECC_CRITERIA, None,
                                       ECC_BLUR)
    except cv2.error:
        return None
    if not np.isfinite(warp).all() or abs(np.linalg.det(warp)) < 1e-6:
        return None
    refined = np.linalg.inv(warp.astype(np.float64))
    refined = refined / refined[2, 2]
    return refined if plausible(refined, max(template.shape)) else None


def register_pair(template: np.ndarray, sample: np.ndarray, detector: str = "sift",
                  ecc: bool = True) -> Registration:
    """Homography template -> sample (chapter 9): keypoints + RANSAC, refined by ECC; the
    RANSAC estimate when ECC fails, the identity when no keypoint estimate is trusted.
    template, sample: [H, W] uint8 greyscale."""
    homography, model, inliers = keypoint_homography(template, sample, detector)
    start = "ransac" if homography is not None else "identity"
    if homography is None:
        homography = np.eye(3)
    if ecc:
        refined = ecc_refine(template, sample, homography)
        if refined is not None:
            return Registration(refined, start + "+ecc", model, inliers)
    return Registration(homography, start, model, inliers)


def warp_onto_sample(template: np.ndarray, homography: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The template laid over the sample's pixel grid and where it is valid (chapter 9).

    template: [H, W, C] float32.  Returns the warped template [H, W, C] and a validity mask
    [H, W] bool: False where the sample pixel has no template source (never a defect)."""
    height, width = template.shape[:2]
    warped = cv2.warpPerspective(template, homography, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if warped.ndim == 2:
        warped = warped[..., None]
    coverage = cv2.warpPerspective(np.ones((height, width), np.float32), homography,
                                   (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped, coverage > 0.999  # partly covered border pixels blend in the black border
