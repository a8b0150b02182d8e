"""OCR-D processor ocrd-ocrobin-binarize: neural page binarization in OCR-D workflows.

It is built on the OCR-D framework (v3 processor API), so it has the standard OCR-D command line,
METS server support and OCR-D's resource lookup for model files. (The docstrings of this module, of the
processor class and of its page method make up the processor's --help, so they are written for users.)
"""

from __future__ import annotations

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

from .imageio import dpi_of, ink_to_image
from .infer import Binarizer, threshold
from .modelfile import packaged_models

#: Name of the executable (and of the tool in ``ocrd-tool.json``).
EXECUTABLE = "ocrd-ocrobin-binarize"
#: Feature added to ``AlternativeImage/@comments``.
FEATURE = "binarized"


def _features(previous: str) -> str:
    """The output image's features: the input's (order kept, no duplicate) plus ``binarized``."""
    names = [f for f in (previous or "").split(",") if f]
    if FEATURE not in names:
        names.append(FEATURE)
    return ",".join(names)


class OcrobinBinarize(Processor):
    """For each page, take the best image the PAGE-XML offers that is not binarized yet (the original,
    or the most refined AlternativeImage), compute the ink probability with the model, threshold it and
    store a 1-bit image (ink black, paper white) in the output file group. The output PAGE-XML gains a
    page-level AlternativeImage whose comments are the input image's features plus "binarized".
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
        tile = int(self.parameter["tile_size"])
        self.binarizer = Binarizer(self._model_spec(self.parameter["model"]), tile=tile or None)
        self.logger.info("model %s", self.binarizer.name)

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
        prob = self.binarizer.binarize(image)
        out = ink_to_image(threshold(prob, float(self.parameter["threshold"])))
        dpi: tuple[float, float] | None = None
        if coords.get("DPI"):
            # the image's own density, x and y as exact as its file has them (OCR-D's "DPI" is one rounded-down
            # int); OCR-D puts its own into the image where the file has none
            dpi = dpi_of(image) or (float(coords["DPI"]), float(coords["DPI"]))
        elif self.parameter["dpi"]:
            dpi = (float(self.parameter["dpi"]), float(self.parameter["dpi"]))
        if dpi:
            out.info["dpi"] = dpi
        alternative = AlternativeImageType(comments=_features(coords.get("features", "")))
        page.add_AlternativeImage(alternative)
        self.logger.debug("page %s: %d×%d, %s", page_id, out.width, out.height, alternative.get_comments())
        result = OcrdPageResult(pcgts)  # (constructor arguments differ between ocrd 3.x releases)
        result.images.append(OcrdPageResultImage(out, "IMG-BIN", alternative))
        return result


@click.command()
@ocrd_cli_options
def cli(*args: Any, **kwargs: Any) -> Any:
    """Console entry ``ocrd-ocrobin-binarize`` (standard OCR-D processor options)."""
    return ocrd_cli_wrap_processor(OcrobinBinarize, *args, **kwargs)


if __name__ == "__main__":
    cli()
