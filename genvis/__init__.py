"""genvis: two-stage, cache-based GenVIS (Heo et al., CVPR 2023) video instance segmentation.

Stage one (``genvis.detector``, ``genvis.cache``) runs a frozen Mask2Former frame detector
once per frame and stores frame queries and mask features in Zarr. Stage two
(``genvis.model``, ``genvis.train``, ``genvis.infer``) trains and evaluates the GenVIS video
modules from that cache. ``genvis.data`` holds the YouTube-VIS / OVIS formats, the synthetic
benchmark and importers; ``genvis.evaluate`` the video AP/AR metrics; ``genvis.report`` the
tables and plots.
"""

__version__ = "0.1.0"
