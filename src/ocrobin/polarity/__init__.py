"""Page polarity: find light-on-dark pages and light-on-dark regions, so the model always sees dark text.

The model was trained on dark ink on lighter paper; a negative (microfilm, a photographic negative) or a
reverse-printed band (a heading in a black bar, a dark caption box) comes out as a solid block of ink.
:func:`detect` looks at the page once, on a grid of blocks of :data:`BLOCK` pixels. In each block the
median is the local ground and the 2nd and 98th percentiles say which way the strokes go: dark text on
light paper reaches far below the median, light text on a dark ground far above it.

* The page's *score* weighs the two over every block with thin strokes (the edge of a large dark area is
  not a stroke); a negative score is a normal page, a clearly positive one a negative. A slightly positive
  one is settled by the model (:func:`detect`'s ``check``): the page is inverted when, as it is, the model
  is less certain of it than inverted, or makes it mostly ink where inverted it finds much less.
  A page whose light strokes sit on a ground much darker than the rest of the page is never a negative:
  that is a dark band on a light page whose strong strokes outweigh the page's own faint text, and it
  goes to the region search below.
* On a normal page, compact groups of blocks whose strokes are light on a darker ground are candidate
  regions; each is inverted only where the model, as it is, makes it mostly ink and inverted much less:
  where the model already reads the light text, or the area is a border, a shadow or a photograph, it is
  left alone.

* Before that search, :func:`find_bands` looks for reverse-printed *bands* pixel by pixel: dark rectangles,
  parallel to the page's edges, with straight sharp edges, a flat ground wider than strokes and light strokes
  inside, in its middle too (a heading bar, a dark caption box). Stains, shadows, scan borders along a page
  edge, lines of bold or blurred text, words of heavy handwriting and solid bars (a redaction over text)
  fail one of those tests. A band is carried on along its length over ground that goes on as a band (a
  stretch with no text in it). A band running into a darker area (a scan border) is split from it by level;
  a dark area along the page's edge is a band only when it plainly holds letters.
  A band needs no model check; the binarizer inverts it exactly and normalises its contrast on its own,
  and the rest of the page without it (a dark band would otherwise set the page's black point and change
  how the text around it is read).

The decision is a :class:`Polarity`, which gives, tile by tile, how much to invert each pixel
(:meth:`Polarity.tile_mask`): 1 inside a region, and near its edge only the pixels whose neighbourhood is
darker than the region's mid level, so the edge of a band does not turn into a line of ink.
"""

from .bands import find_bands
from .blocks import BLOCK, block_percentiles
from .decide import MODES, ModelCheck, Polarity, detect, detect_bands

__all__ = ["BLOCK", "MODES", "ModelCheck", "Polarity", "block_percentiles", "detect", "detect_bands", "find_bands"]
