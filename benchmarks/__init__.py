"""The benchmark suite of uow: ``python -m benchmarks`` (``--help`` for the options).

Every implementation of every workload runs in one process, round-robin within each repetition, and
the median of the repetitions is reported next to its ratio to plain SQLAlchemy measured in the same
run. Results are checked (row counts, checksums of what was read); a wrong result or a crash makes the
command exit non-zero, a slow result never does.

Modules: ``settings`` (backends, workloads, sizes), ``models`` (tables and the data they hold),
``envs`` (engines and table management), ``impl_*`` (one module per family of implementations),
``runner`` (timing and checks), ``stream`` and ``importtime`` (the measurements that need a fresh
process), ``report`` (table, targets, JSON) and ``cli``.
"""
