"""``bratsx serve``: a local web app to segment a case, view it and review a batch.

* :mod:`~bratsx.serve.settings`: what the server is told (:class:`ServeSettings`)
* :mod:`~bratsx.serve.uploads`: four NIfTI files or one ``.zip`` into a case folder, safely
* :mod:`~bratsx.serve.jobs`: the job queue, its worker threads and the expiry of old jobs
* :mod:`~bratsx.serve.job`: what a job does (a batch of one through ``run_batch``, the labels kept in memory)
* :mod:`~bratsx.serve.presentation`: what the page shows (the record, the report's overlay and flags)
* :mod:`~bratsx.serve.review`: a ``bratsx infer`` output under review, verdicts into ``qc.csv``
* :mod:`~bratsx.serve.security`: token, host, origin and size checks on every request
* :mod:`~bratsx.serve.state`, :mod:`~bratsx.serve.app`: the state object and the FastAPI app
* ``static/``: the page (HTML, JavaScript, CSS) and the vendored NiiVue viewer

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart); never torch.
"""
