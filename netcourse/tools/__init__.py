"""The commands of ``python -m netcourse``: doctor (can this machine run the course?) and bench.

They sit above the experiments they drive.
"""
