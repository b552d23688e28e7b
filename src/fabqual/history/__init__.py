"""What history says about a run: regressions against learned baselines, known issues, flaky rows.

Pure rules (:mod:`baseline`, :mod:`flaky`; known issues are records in
:mod:`fabqual.results.known_issues`), :mod:`assess`, which applies them to a run
with its history read from the results database, and :mod:`record`, which
stores each run as it ends and assesses it.
"""
