"""A qualification run as an operator starts it: the nightly run and the rack's lock.

Above the report (it reads the results the report wrote) and below the CLI.
"""
