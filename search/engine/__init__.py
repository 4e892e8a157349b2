"""The optimisation engine: the run record, the study and its samplers, the Tune searcher and scheduler.

Importing this package imports nothing heavy; :mod:`search.engine.record` (keys, outcomes,
objectives, constraint maths, study metadata) is plain Python, the other modules import Optuna and
Ray where they are used.
"""
