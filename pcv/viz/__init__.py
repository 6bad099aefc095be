"""Pictures of PCV predictions (matplotlib, no display needed).

What the votes did, drawn over the image:

- :func:`overlay`: the panoptic segmentation, stuff in its category colour,
  every instance in a distinct colour, with a legend of the classes present.
- :func:`heatmap`: the vote heatmap with the peak regions' maxima marked.
- :func:`backprojection`: one peak region, the pixels whose votes
  backproject to it, and the query filter drawn around the peak.
- :func:`validation_panel`: the trainer's rows of input | ground truth |
  prediction | heatmap, as one image.

Figures are ``matplotlib.figure.Figure`` objects built without pyplot (no
global backend, nothing opens a window; a notebook displays them as they
are); :func:`figure_to_array` renders one to an RGB array with the Agg
canvas. Plain-array helpers (:func:`colorize`, :func:`blend`) need numpy only.

Coordinates: image pixels for the image, *map* pixels (the heads' stride-4
output of the padded network input) for heatmaps, peaks, boxes and vote
bins. ``scale = (sy, sx)`` is image pixels per map pixel; by default
``image size / map size``; a :class:`pcv.Prediction` carries its
own (``prediction.scale``, its ``heatmap`` cropped to the image). Map pixel
``(y, x)`` covers image pixels ``[y * sy, (y + 1) * sy)``.

Legend: H, W image size; h, w map size; K vote bins; D the grid's field.
"""

from pcv import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "instance_colour": "colours",
        "segment_colours": "colours",
        "colorize": "colours",
        "boundaries": "colours",
        "blend": "colours",
        "new_figure": "figures",
        "figure_to_array": "figures",
        "figure_png": "figures",
        "overlay": "overlays",
        "label_points": "overlays",
        "heatmap": "votes",
        "vote_bins": "votes",
        "backprojection": "votes",
        "validation_panel": "panel",
    },
)
