"""What a learner sees.

- ``plots``: every figure: generic drawing apart from each lesson's figures.
- ``exercises``: self-checking exercises: predictions, questions on your own capture, folded worked answers.
- ``knobs``: ``Knob``: controls that redraw one picture in place (the default picture shows without a kernel).
- ``live``: ``LivePipe``, a connection a learner drives with buttons.
- ``images``: redraws the pictures in ``images/``.
- ``timing``: how long a notebook takes, section by section (the time at its top; *Going deeper* apart).
"""
