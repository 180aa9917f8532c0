"""Optional extras: the one way bratsx imports a package that only an extra installs, and the one error shape
when it is missing (``<package> is not installed[ (for <what>)]: pip install 'bratsx[<extra>]'``).

As MONAI's ``optional_import``: a module that needs an extra calls :func:`optional_import` inside the
function that uses it, so importing bratsx never needs the extra, and a user without it gets one line
saying what to install. :func:`optional_module` is for packages bratsx can do without (a faster gzip,
TensorBoard event files): it returns ``None`` instead.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .errors import BratsxError

__all__ = ["MissingExtraError", "missing_extra", "optional_import", "optional_module"]


class MissingExtraError(BratsxError):
    """A package of an optional extra is not installed."""


def missing_extra(package: str, extra: str, purpose: str | None = None) -> MissingExtraError:
    """The one error for a missing optional package.

    Args:
        package: what is missing, as pip names it (``onnxruntime``, ``Pillow``).
        extra: the bratsx extra that installs it.
        purpose: what needed it (``--report``, ``bratsx serve``), when not obvious from the package.
    """
    needed = f" (for {purpose})" if purpose else ""
    return MissingExtraError(f"{package} is not installed{needed}: pip install 'bratsx[{extra}]'")


def optional_import(module: str, extra: str, *, purpose: str | None = None, attribute: str | None = None) -> Any:
    """Import ``module`` (and return its ``attribute``, if named), or say which extra installs what is missing.

    ``module`` may be a bratsx module that imports the extra's package at its top: the error then names
    the package that was missing, not the bratsx module.

    Raises:
        MissingExtraError: the module, or a package it imports, is not installed.
    """
    try:
        imported = _import(module)
    except ImportError as error:
        missing = (error.name or module).split(".")[0]
        if missing == "bratsx":  # a bug of ours, not a missing extra
            raise
        raise missing_extra(_PIP_NAMES.get(missing, missing), extra, purpose) from None
    return getattr(imported, attribute) if attribute else imported


def optional_module(module: str) -> ModuleType | None:
    """``module`` if it is installed, else ``None`` (for packages bratsx can do without)."""
    try:
        return _import(module)
    except ImportError:
        return None


def _import(module: str) -> ModuleType:
    """``module`` itself (not its top package), through the import statement's own hook, as ``import`` does."""
    return __import__(module, fromlist=["__name__"])


#: Import names whose package is known by another name.
_PIP_NAMES = {"PIL": "Pillow", "tensorrt": "TensorRT", "onnxconverter_common": "onnxconverter-common",
              "cuda": "cuda-python", "multipart": "python-multipart"}
