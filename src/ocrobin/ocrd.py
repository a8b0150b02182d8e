"""OCR-D processor ocrd-ocrobin-binarize: neural page binarization in OCR-D workflows.

It is built on the OCR-D framework (v3 processor API), so it has the standard OCR-D command line,
METS server support and OCR-D's resource lookup for model files. A page takes the same trip as in
``ocrobin binarize`` (:func:`ocrobin.batch.binarize_page`), so both give the same pixels for the same
image. (The docstrings of this module, of the processor class and of its page method make up the
processor's --help, so they are written for users.)
"""

from __future__ import annotations

import io
import os
from functools import cached_property
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import click
from ocrd import Processor
from ocrd.decorators import ocrd_cli_options, ocrd_cli_wrap_processor
from ocrd.processor import OcrdPageResult, OcrdPageResultImage
from ocrd.processor.base import ResourceNotFoundError
from ocrd_models.ocrd_page import AlternativeImageType, OcrdPage
from PIL import Image

from .batch import Options, binarize_page
from .exceptions import UsageError
from .imageio import Page, _pil_data, dpi_of
from .infer import Binarizer
from .modelfile import packaged_models
from .runtime import release_freed_memory

#: Name of the executable (and of the tool in ``ocrd-tool.json``).
EXECUTABLE = "ocrd-ocrobin-binarize"
#: Feature added to ``AlternativeImage/@comments``.
FEATURE = "binarized"


def _check_groups(input_file_grp: str | None, output_file_grp: str | None) -> None:
    """Refuse an output file group that is also an input file group (its images would be mixed up with or
    replace the input's, and a rerun would take its own results for inputs).

    Raises:
        UsageError: one line naming the file group.
    """
    inputs = {g for g in (input_file_grp or "").split(",") if g}
    for grp in (g for g in (output_file_grp or "").split(",") if g):
        if grp in inputs:
            raise UsageError(f"{EXECUTABLE}: output file group {grp} is also an input file group: it would mix the "
                             "binarized images with (or write them over) its inputs; choose another -O")


def _features(previous: str) -> str:
    """The output image's features: the input's (order kept, no duplicate) plus ``binarized``."""
    names = [f for f in (previous or "").split(",") if f]
    if FEATURE not in names:
        names.append(FEATURE)
    return ",".join(names)


class OcrobinBinarize(Processor):
    """For each page, take the best image the PAGE-XML offers that is not binarized yet (the original,
    or the most refined AlternativeImage), compute the ink probability with the model, threshold it and
    store a 1-bit image (ink black, paper white) in the output file group. With polarity "auto" (the
    default), light-on-dark pages and regions are found and binarized as text, so text is always black.
    The output PAGE-XML gains a page-level AlternativeImage whose comments are the input image's features
    plus "binarized". The output file group must differ from the input file group.
    """

    # torch starts its thread pool in ``setup``; forking page workers after that can hang in OpenMP.
    max_workers = 1

    @property
    def executable(self) -> str:
        return EXECUTABLE

    @cached_property
    def metadata_location(self) -> Path:
        # the package data file directly (the framework's lookup fails when ocrobin is a namespace package)
        return Path(str(resources.files("ocrobin") / "ocrd-tool.json"))

    @cached_property
    def version(self) -> str:
        try:
            return metadata.version("ocrobin")
        except metadata.PackageNotFoundError:
            return str(self.metadata["version"])

    @property
    def moduledir(self) -> str:
        # packaged models double as OCR-D module resources, so ``-P model lstm2-seed.safetensors`` resolves
        return str(resources.files("ocrobin") / "data")

    def _model_spec(self, spec: str) -> str:
        """Packaged names and existing files as they are; other names through OCR-D's resource lookup."""
        if spec == "default" or spec in packaged_models() or os.path.isfile(spec):
            return spec
        try:
            return str(self.resolve_resource(spec))
        except ResourceNotFoundError:
            return spec  # ocrobin.infer.load raises a clear ModelError naming it

    def setup(self) -> None:
        """Load the model once per processor instance (before the framework enters the workspace)."""
        release_freed_memory()
        tile = int(self.parameter["tile_size"])
        self.opts = Options(threshold=float(self.parameter["threshold"]), polarity=self.parameter["polarity"])
        self.binarizer = Binarizer(self._model_spec(self.parameter["model"]), tile=tile or None,
                                   polarity=self.opts.polarity, resize=float(self.parameter["resize"]))
        self.logger.info("model %s", self.binarizer.name)

    def verify(self) -> bool:
        """The framework's checks of the file groups, after refusing an output group that is an input group."""
        _check_groups(self.input_file_grp, self.output_file_grp)
        return bool(super().verify())

    def shutdown(self) -> None:
        """Drop the model."""
        self.binarizer = None

    def process_page_pcgts(self, *input_pcgts: OcrdPage | None, page_id: str | None = None) -> OcrdPageResult:
        """The output image keeps the input image's pixel density; an image without one gets the "dpi"
        parameter when it is above 0.
        """
        pcgts = input_pcgts[0]
        assert pcgts is not None
        page = pcgts.get_Page()
        image, coords, _ = self.workspace.image_from_page(page, page_id, feature_filter=FEATURE)
        dpi: tuple[float, float] | None = None
        if coords.get("DPI"):
            # the image's own density, x and y as exact as its file has them (OCR-D's "DPI" is one rounded-down
            # int); OCR-D puts its own into the image where the file has none
            dpi = dpi_of(image) or (float(coords["DPI"]), float(coords["DPI"]))
        elif self.parameter["dpi"]:
            dpi = (float(self.parameter["dpi"]), float(self.parameter["dpi"]))
        # the grey page as `ocrobin binarize` reads a file (writable, as torch wants), then the same trip
        data = _pil_data(image)
        enc = binarize_page(self.binarizer, Page(data if data.flags.writeable else data.copy(), dpi), self.opts)
        out = Image.open(io.BytesIO(enc.binary))
        out.load()
        if dpi:
            out.info["dpi"] = dpi  # exactly, not as rounded to pixels per metre in the PNG
        alternative = AlternativeImageType(comments=_features(coords.get("features", "")))
        page.add_AlternativeImage(alternative)
        r = enc.result
        self.logger.debug("page %s: %d×%d, %s, polarity %s, confidence %.3f, flags %s", page_id, out.width,
                          out.height, alternative.get_comments(), r.polarity, r.confidence, ",".join(r.flags) or "-")
        result = OcrdPageResult(pcgts)  # (constructor arguments differ between ocrd 3.x releases)
        result.images.append(OcrdPageResultImage(out, "IMG-BIN", alternative))
        return result


@click.command()
@ocrd_cli_options
def cli(*args: Any, **kwargs: Any) -> Any:
    """Console entry ``ocrd-ocrobin-binarize`` (standard OCR-D processor options)."""
    try:
        _check_groups(kwargs.get("input_file_grp"), kwargs.get("output_file_grp"))
    except UsageError as e:
        raise click.UsageError(str(e)) from None
    return ocrd_cli_wrap_processor(OcrobinBinarize, *args, **kwargs)


if __name__ == "__main__":
    cli()
