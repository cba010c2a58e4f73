"""What a learner sees: plots, self-checking exercises, and the pictures in ``images/``."""
