"""What history says about a run: regressions against learned baselines, known issues, flaky rows.

Pure rules (:mod:`baseline`, :mod:`known_issues`, :mod:`flaky`) and
:mod:`assess`, which applies them to a run with its history read from the
results database.
"""
