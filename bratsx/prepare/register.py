"""Registration with SimpleITK: each sequence rigidly to the reference, the reference affinely to the atlas.

Both use Mattes mutual information (50 bins, 60,000 random samples per level with a fixed seed, so a run is
reproducible), a regular-step gradient descent with physical-unit scales, and two resolution levels on images binned
to about 2 mm (shrink 2, 1; smoothing 2, 0 mm). Sequences of one session share the scanner's coordinates, so
their rigid registration starts at identity (rotation about the reference's centre); the reference
starts towards the atlas from the centres of mass (``CenteredTransformInitializer`` MOMENTS), then a
rigid stage, then an affine one initialised from it.

A registration is accepted only when it did not make the metric worse: when the final mutual
information is more than 5% below the starting one, the case stops (:class:`RegistrationError`), so a
failed alignment never yields a case that silently looks prepared; slightly below, the start was already
the optimum (sequences acquired aligned) and is kept.

SimpleITK transforms map points of the *fixed* image to the *moving* one; every transform here is
saved as an ITK ``.tfm`` text file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CaseError

__all__ = ["Registration", "RegistrationError", "affine_to_atlas", "mutual_information", "rigid_to_reference"]

#: Seed of the metric's random sampling: the same inputs give the same transform.
SAMPLING_SEED = 20261206
#: Points sampled by the metric at each level: enough for a stable 50-bin joint histogram, and a
#: fixed cost per iteration whatever the image size (10% of a 240x240x155 volume took ~2 s per iteration).
METRIC_SAMPLES = 60_000
#: Registration runs on images binned to about this voxel size (mm). ITK's metric builds gradient images
#: of the whole fixed and moving images at every level, which on a 1 mm 240x240x155 volume cost seconds
#: per evaluation on this CPU; at 2 mm the recovered transforms of the tests stay within 0.5 mm.
WORKING_SPACING = 2.0
#: Axes with fewer voxels than this are not binned: a small image binned and then shrunk for the coarse
#: level would keep too few voxels to align.
MIN_BINNED_SIZE = 128
#: A final metric this much (relative) below the start is a registration that did not converge. Within it,
#: the start was already the optimum (sequences acquired aligned): the start is kept.
CONVERGENCE_TOLERANCE = 0.05


class RegistrationError(CaseError):
    """A registration that did not converge (the metric got worse)."""


@dataclass(frozen=True)
class Registration:
    """One registration's result.

    Attributes:
        transform: SimpleITK transform mapping fixed-image points to moving-image points.
        mi_before: mutual information at the start (higher is better; bits-like units of Mattes MI).
        mi_after: mutual information at the end.
        iterations: optimizer iterations of the last level.
        stop: the optimizer's stopping condition.
    """

    transform: object
    mi_before: float
    mi_after: float
    iterations: int
    stop: str


def _method(fixed, fixed_mask=None, moving_mask=None, iterations: int = 200, shrink=(4, 2, 1),
            sigmas=(2.0, 1.0, 0.0)):
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    method.SetMetricSamplingStrategy(method.RANDOM)
    voxels = np.prod(fixed.GetSize())
    method.SetMetricSamplingPercentagePerLevel(
        [min(1.0, METRIC_SAMPLES * factor**3 / voxels) for factor in shrink], SAMPLING_SEED)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        method.SetMetricMovingMask(moving_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(shrink))
    method.SetSmoothingSigmasPerLevel(list(sigmas))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def mutual_information(fixed, moving, transform, fixed_mask=None) -> float:
    """Mattes mutual information of ``moving`` seen through ``transform`` on ``fixed`` (higher is better)."""
    method = _method(fixed, fixed_mask, shrink=(1,), sigmas=(0.0,))
    method.SetInitialTransform(transform, inPlace=False)
    try:
        return -float(method.MetricEvaluate(fixed, moving))
    except RuntimeError:  # no overlap at all
        return 0.0


def _coarse(image, mask: bool = False):
    """``image`` binned to voxels of about :data:`WORKING_SPACING` mm (a no-op for coarser axes)."""
    import SimpleITK as sitk

    if image is None:
        return None
    factors = [max(1, int(WORKING_SPACING // spacing)) if size >= MIN_BINNED_SIZE else 1
               for spacing, size in zip(image.GetSpacing(), image.GetSize())]
    if factors == [1, 1, 1]:
        return image
    return sitk.Shrink(image, factors) if mask else sitk.BinShrink(image, factors)


def _optimise(case_id: str, what: str, fixed, moving, initial, fixed_mask, moving_mask, shrink, sigmas):
    """One multi-resolution run: the transform found, its metric, iterations and stop condition."""
    import SimpleITK as sitk

    method = _method(fixed, fixed_mask, moving_mask, shrink=shrink, sigmas=sigmas)
    method.SetInitialTransform(initial, inPlace=False)
    try:
        found = method.Execute(fixed, moving)
    except RuntimeError as error:
        raise RegistrationError(case_id, f"{what}: registration failed ({str(error).splitlines()[-1][:120]})") \
            from None
    transform = (found.GetNthTransform(0) if isinstance(found, sitk.CompositeTransform) else found).Downcast()
    return (transform, mutual_information(fixed, moving, transform, fixed_mask), method.GetOptimizerIteration(),
            method.GetOptimizerStopConditionDescription())


def _run(case_id: str, what: str, fixed, moving, initial, fixed_mask=None, moving_mask=None,
         shrink=(2, 1), sigmas=(2.0, 0.0)) -> Registration:
    """Register, and accept the result only if the metric did not get worse.

    When the multi-resolution run ends below its start (the coarse level's optimum can sit off the fine
    one's, and thick slices make the fine level's landscape bumpy), a single fine level from the start
    is tried too, and the better of the two is kept.
    """
    fixed, moving = _coarse(fixed), _coarse(moving)
    fixed_mask, moving_mask = _coarse(fixed_mask, mask=True), _coarse(moving_mask, mask=True)
    before = mutual_information(fixed, moving, initial, fixed_mask)
    transform, after, iterations, stop = _optimise(case_id, what, fixed, moving, initial, fixed_mask, moving_mask,
                                                   shrink, sigmas)
    if after < before and len(shrink) > 1:
        fine = _optimise(case_id, what, fixed, moving, initial, fixed_mask, moving_mask, (1,), (0.0,))
        if fine[1] > after:
            transform, after, iterations, stop = fine
    if after < before * (1 - CONVERGENCE_TOLERANCE):
        raise RegistrationError(case_id, f"{what}: registration did not converge (mutual information "
                                         f"{before:.3f} before, {after:.3f} after)")
    if after < before:
        return Registration(initial, before, before, iterations, "kept the start (already optimal)")
    return Registration(transform, before, after, iterations, stop)


def rigid_to_reference(case_id: str, what: str, reference, moving, moving_mask=None) -> Registration:
    """Rigid (6 parameters) registration of ``moving`` onto ``reference``; identity start, same scanner space.

    Args:
        case_id: for errors.
        what: the sequence's name, for errors.
        reference: the fixed image (the reference sequence).
        moving: the sequence to align.
        moving_mask: optional region of ``moving`` to sample.

    Raises:
        RegistrationError: the metric got worse or the optimiser failed.
    """
    import SimpleITK as sitk

    initial = sitk.Euler3DTransform()
    size = reference.GetSize()
    centre = reference.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in size])
    initial.SetCenter(centre)
    return _run(case_id, what, reference, moving, initial, None, moving_mask)


def affine_to_atlas(case_id: str, atlas, reference, atlas_mask=None) -> Registration:
    """Rigid then affine (12 parameters) registration of ``reference`` onto the atlas.

    The returned transform maps atlas points to reference points: it resamples any image of the
    reference's space onto the atlas grid.

    Raises:
        RegistrationError: either stage made the metric worse or failed.
    """
    import SimpleITK as sitk

    start = sitk.CenteredTransformInitializer(atlas, reference, sitk.Euler3DTransform(),
                                              sitk.CenteredTransformInitializerFilter.MOMENTS)
    rigid = _run(case_id, "reference to atlas (rigid)", atlas, reference, start, atlas_mask)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.transform.GetCenter())
    affine.SetMatrix(rigid.transform.GetMatrix())
    affine.SetTranslation(rigid.transform.GetTranslation())
    final = _run(case_id, "reference to atlas (affine)", atlas, reference, affine, atlas_mask,
                 shrink=(1,), sigmas=(0.0,))
    return Registration(final.transform, rigid.mi_before, final.mi_after, final.iterations, final.stop)
