"""One module per notebook: the live scenarios that notebook runs, each returning a plain result.

``registry`` names the scenarios whose captures the course records and ships.
"""
