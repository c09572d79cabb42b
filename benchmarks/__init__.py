"""Benchmarks for airflow-provider-pgbackup (issue #7); run by hand with ``make bench``, never by pytest.

``python -m benchmarks --help`` lists the options; ``--quick`` is a smoke run on a small database.
"""
