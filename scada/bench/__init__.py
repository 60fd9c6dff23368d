"""Benchmarks (``scada bench NAME``): each module has ``add_arguments(parser)`` and ``run(args)``.

They live here, at the top of the house, because they build whole sites (``scada.config``)
and runtimes; the packages they measure never import ``scada``. Tests never assert their
wall-clock figures.
"""

__all__: list[str] = []
