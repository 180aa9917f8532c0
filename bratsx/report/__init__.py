"""Seeing the results: overlay pictures of each case and a self-contained QC report of a batch.

* :mod:`~bratsx.report.colors`: the one colour table (NCR red, edema green, ET yellow) and palette
* :mod:`~bratsx.report.overlay`: three planes through the tumour, radiological view, square pixels
* :mod:`~bratsx.report.gif`: an axial fly-through of the tumour
* :mod:`~bratsx.report.render`: one case from disk to its picture files (a worker process's job)
* :mod:`~bratsx.report.collect`: what an inference folder says about each case
* :mod:`~bratsx.report.flags`: QC flags pointing a reviewer at the cases worth a look
* :mod:`~bratsx.report.qc`: review verdicts, ``qc.csv``
* :mod:`~bratsx.report.html`: the self-contained HTML pages
* :mod:`~bratsx.report.chart`: a training run's curves, drawn with Pillow
* :mod:`~bratsx.report.build`: everything together, :func:`~bratsx.report.build.build_batch_report`

Needs Pillow (the ``report`` extra); never torch.
"""
