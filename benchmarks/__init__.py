"""The benchmark suite of uow: ``python -m benchmarks count`` (see docs/benchmarks.md).

Modules: ``settings`` (backends, workloads, sizes, targets), ``models`` (tables, data, expected
results), ``envs`` (a private database per process), ``base`` and ``impl_*`` (the implementations),
``bench`` (one implementation on one backend, checked runs), ``probe`` (the measuring process),
``count`` (probes under callgrind), ``wall`` (pyperf), ``importtime``, ``report``, ``stream``.
"""
