"""Frame interpolation: the frames between two consecutive frames of a video.

`flow.FlowInterpolator` (OpenCV optical flow, built in) and `learned` (a
RIFE-family network loaded from a registered `interpolator` model) share one
method, ``between(a, b, times)``; `flow.blend` is the plain cross-fade they are
measured against (`benchmarks/interpolate.py`), `metrics.psnr` the measure.
Nothing here is imported at package import: `flow` needs OpenCV, `learned` torch.
"""
