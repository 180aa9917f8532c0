"""Raw scans made in the test: DICOM series written with pydicom from synthetic volumes, with the headers a
scanner writes (descriptions, TE/TR/TI, contrast agent, UIDs, geometry), and NIfTI files per sequence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from bratsx.labels import MODALITY_ORDER, Modality
from bratsx.synth import synthesize_case

#: A small synthetic brain: fast to register, large enough for mutual information.
SHAPE = (64, 72, 56)
#: Scanner protocol of each sequence: description, TE, TR, TI (ms), contrast agent, scanning sequence.
PROTOCOLS = {
    Modality.FLAIR: ("AX FLAIR", 120.0, 9000.0, 2500.0, "", "SE IR"),
    Modality.T1: ("AX T1 SE", 12.0, 500.0, None, "", "SE"),
    Modality.T1CE: ("AX T1 SE", 12.0, 500.0, None, "GADAVIST", "SE"),
    Modality.T2: ("AX T2 TSE", 100.0, 4000.0, None, "", "SE"),
}


@dataclass(frozen=True)
class Study:
    """A written study: its UIDs, the series UID per sequence, and the volumes (x, y, z; L,P,S) written."""

    study_uid: str
    series_uids: dict[Modality, str]
    volumes: dict[Modality, np.ndarray]
    labels: np.ndarray
    spacing: tuple[float, float, float]


def synthetic_volumes(seed: int = 0, shape=SHAPE) -> tuple[dict[Modality, np.ndarray], np.ndarray]:
    """The four int16 sequences and the labels (BraTS 2023 values) of one synthetic case."""
    case = synthesize_case(shape, seed)
    return {m: case.image[i] for i, m in enumerate(MODALITY_ORDER)}, case.labels


def write_series(
    folder: Path,
    volume: np.ndarray,
    *,
    study_uid: str,
    frame_uid: str,
    number: int,
    description: str,
    te: float | None = 12.0,
    tr: float | None = 500.0,
    ti: float | None = None,
    contrast: str = "",
    scanning: str = "SE",
    modality: str = "MR",
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    origin: tuple[float, float, float] = (-30.0, -40.0, -20.0),
    direction: np.ndarray | None = None,
    patient_id: str = "SYN-001",
) -> str:
    """Write ``volume`` (x, y, z along L, P, S) as single-frame DICOM files, one per axial slice.

    Returns:
        The series' SeriesInstanceUID.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    axes = np.eye(3) if direction is None else np.asarray(direction, dtype=float)  # columns: x, y, z in LPS
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{number:03d}_{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Synthetic^Case", patient_id, "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "A1"
        ds.ReferringPhysicianName, ds.Manufacturer, ds.Modality = "", "bratsx-test", modality
        ds.SeriesNumber, ds.InstanceNumber = number, k + 1
        ds.SeriesDescription = ds.ProtocolName = description
        ds.ImageType = list(image_type)
        ds.ScanningSequence, ds.SequenceVariant, ds.SequenceName = scanning, "SK", f"*{scanning.lower()}2d1"
        if te is not None:
            ds.EchoTime = te
        if tr is not None:
            ds.RepetitionTime = tr
        if ti is not None:
            ds.InversionTime = ti
        if contrast:
            ds.ContrastBolusAgent = contrast
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*axes[:, 0], *axes[:, 1])]
        ds.ImagePositionPatient = [round(float(v), 4) for v in np.add(origin, k * spacing[2] * axes[:, 2])]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T.astype(np.int16)).tobytes()
        pydicom.dcmwrite(ds.filename, ds, enforce_file_format=True)
    return series_uid


def write_study(
    root: Path,
    *,
    seed: int = 0,
    sequences: tuple[Modality, ...] = MODALITY_ORDER,
    slice_step: int = 2,
    patient_id: str = "SYN-001",
    extras: bool = True,
) -> Study:
    """A study of the synthetic case: its sequences (every ``slice_step``-th slice, so thicker slices),
    plus a 3-plane localizer, a single-slice series and a non-MR series when ``extras``."""
    volumes, labels = synthetic_volumes(seed)
    study_uid, frame_uid = generate_uid(), generate_uid()
    spacing = (1.0, 1.0, float(slice_step))
    written, uids = {}, {}
    for number, sequence in enumerate(sequences, start=2):
        description, te, tr, ti, contrast, scanning = PROTOCOLS[sequence]
        volume = volumes[sequence][:, :, ::slice_step]
        uids[sequence] = write_series(root / f"series{number}", volume, study_uid=study_uid, frame_uid=frame_uid,
                                      number=number, description=description, te=te, tr=tr, ti=ti, contrast=contrast,
                                      scanning=scanning, spacing=spacing, patient_id=patient_id)
        written[sequence] = volume
    if extras:
        some = volumes[Modality.T1][:, :, 20:23]
        write_series(root / "localizer", some, study_uid=study_uid, frame_uid=frame_uid, number=1,
                     description="3-plane localizer", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                     patient_id=patient_id)
        write_series(root / "single", volumes[Modality.T2][:, :, 28:29], study_uid=study_uid, frame_uid=frame_uid,
                     number=20, description="T2 single slice", te=100.0, tr=4000.0, patient_id=patient_id)
        write_series(root / "other", some, study_uid=study_uid, frame_uid=frame_uid, number=30,
                     description="dose report", modality="OT", patient_id=patient_id)
    return Study(study_uid, uids, written, labels[:, :, ::slice_step], spacing)


def write_nifti_as_series(path: Path, folder: Path, **headers) -> str:
    """A NIfTI volume as a DICOM series of its exact geometry (oblique included); ``headers`` as for
    :func:`write_series` (study_uid, frame_uid, number, description, te, tr, ...)."""
    import nibabel as nib

    image = nib.load(path)
    to_lps = np.diag([-1.0, -1.0, 1.0])
    axes = to_lps @ image.affine[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    return write_series(folder, np.asanyarray(image.dataobj), spacing=tuple(spacing),
                        origin=tuple(to_lps @ image.affine[:3, 3]), direction=axes / spacing, **headers)
