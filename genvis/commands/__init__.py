"""One module per ``genvis`` sub-command: ``add_arguments(parser)`` and ``run(args) -> int``.

These modules only parse arguments and call the library; the work lives in the stage
packages (``genvis.data``, ``genvis.detector``, ``genvis.cache``, ``genvis.train``, ...).
"""
