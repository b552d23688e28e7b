"""What a run leaves behind, as records: its results file, run-against-run comparison, known issues.

The bottom of the results stack: :mod:`fabqual.results_db` stores these
records, :mod:`fabqual.history` judges a run against the stored ones, and
:mod:`fabqual.report` renders them; nothing here imports any of the three.
"""
