"""What ``bratsx serve`` is told: one frozen settings object, built by the command line or a test.

Each default is written here once; ``bratsx serve --help`` reads them from the dataclass.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import BratsxError
from ..labels import LabelConvention
from ..runtime.backends import BackendName

__all__ = ["MEGABYTE", "ServeSettings", "is_loopback"]

MEGABYTE = 1024 * 1024
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """How the app runs.

    Attributes:
        model: the model that segments uploads (a model folder or file, as ``bratsx infer --model``);
            ``None``: no segmentation (review only).
        backend: inference engine (``auto`` picks the fastest installed).
        threads: CPU threads of the app, split between the job slots' models (``None``: all cores).
        host: address to bind; anything but a loopback address needs ``token``.
        port: TCP port.
        token: the secret every API request must carry (a header the page sends; the printed address hands it
            to the page); ``None``: no check (loopback only).
        data_dir: where job folders go; ``None``: a fresh temporary folder, deleted at exit.
        max_upload_mb: largest request body accepted (a BraTS case is 10-150 MB).
        max_unzipped_mb: most bytes a ``.zip`` upload may expand to.
        max_zip_members: most entries a ``.zip`` upload may hold.
        max_raw_zip_members: most entries a ``.zip`` of raw scans may hold (a DICOM study is a file per slice).
        max_files: most files one upload may hold (four sequences and a reference are five).
        max_queued_jobs: most jobs waiting to start; an upload beyond it is refused until one starts.
        expire_minutes: a finished job's files are deleted this long after it ends.
        jobs_per_model: jobs segmented at once per model (each one holds a case in memory).
        cases_dir: review mode: the cases a ``bratsx infer`` run segmented.
        predictions_dir: review mode: that run's output folder (verdicts go to its ``qc.csv``).
        labels: the label set of uploads' outputs and of the batch under review (``--labels``); ``None``:
            each case's own (its layout, id or values), as ``bratsx infer`` and ``bratsx report`` read it.
    """

    model: Path | None = None
    backend: BackendName = BackendName.AUTO
    threads: int | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    data_dir: Path | None = None
    max_upload_mb: float = 200.0
    max_unzipped_mb: float = 1024.0
    max_zip_members: int = 64
    max_raw_zip_members: int = 4096
    max_files: int = 8
    max_queued_jobs: int = 16
    expire_minutes: float = 60.0
    jobs_per_model: int = 1
    cases_dir: Path | None = None
    predictions_dir: Path | None = None
    labels: LabelConvention | None = None

    def __post_init__(self) -> None:
        if (self.cases_dir is None) != (self.predictions_dir is None):
            raise BratsxError("review mode needs both --cases and --predictions")
        if not is_loopback(self.host) and not self.token:
            raise BratsxError(f"--host {self.host} accepts other machines: give --token (or let bratsx serve make "
                              "one)")
        if self.token is not None and not _TOKEN.fullmatch(self.token):
            raise BratsxError("--token must be at least 16 characters from A-Z, a-z, 0-9, '-' and '_' (or leave it "
                              "out: a random one is made)")
        for name in ("max_upload_mb", "max_unzipped_mb", "expire_minutes"):
            if getattr(self, name) <= 0:
                raise BratsxError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("jobs_per_model", "max_zip_members", "max_raw_zip_members", "max_files", "max_queued_jobs"):
            if getattr(self, name) < 1:
                raise BratsxError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")

    @property
    def review(self) -> bool:
        """Whether a batch is reviewed (``cases_dir`` and ``predictions_dir`` given)."""
        return self.predictions_dir is not None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MEGABYTE)

    @property
    def max_unzipped_bytes(self) -> int:
        return int(self.max_unzipped_mb * MEGABYTE)

    @property
    def expire_seconds(self) -> float:
        return self.expire_minutes * 60.0
