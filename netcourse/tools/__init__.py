"""The commands of ``python -m netcourse`` and the test tools. They sit above the experiments they drive.

- ``doctor``: can this machine run the course?
- ``bench``: ``make bench``'s table; its cases in ``lessonbench`` (each lesson's mechanisms at size),
  ``loadbench`` and ``runtimebench`` (under load and abuse), ``linkbench`` (the emulated link), ``flood``
  (capture under a UDP flood, in a namespace).
- ``soak``: a learner's session: every cell of a notebook run again and again in one kernel.
- ``browser``: JupyterLab in Chromium: Run All, every knob turned (the browser test and the bench).
- ``learnercopy``: ``my-notebooks/``, the learner's copy (outputs cleared, never overwritten; ``make fresh-copy``).
- ``layers``: the import drawing, made from the code (``python -m netcourse layers``).
- ``publish``: ``make html`` (static pages) and the Binder link.
"""
