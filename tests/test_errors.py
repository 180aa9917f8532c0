"""Errors name the case and the file, even where the file system refuses to say what the path is."""

import os
import pickle

from bratsx.errors import CaseError, LabelError


def test_a_case_error_names_a_path_it_may_not_examine(tmp_path, monkeypatch):
    def refusing_stat(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "stat", refusing_stat)
    error = CaseError("case_1", "cannot be read (Permission denied)", tmp_path / "flair.nii.gz")
    assert str(error) == "case case_1, file flair.nii.gz: cannot be read (Permission denied)"


def test_a_label_error_is_a_case_error_that_survives_pickling(tmp_path):
    error = pickle.loads(pickle.dumps(LabelError("case_1", "label values [3] ...", tmp_path)))
    assert isinstance(error, LabelError) and isinstance(error, CaseError)
    assert str(error) == f"case case_1, folder {tmp_path.name}: label values [3] ..."
