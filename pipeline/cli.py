"""The `clipfeat` command. Subcommands only parse arguments and call the library.

Each package contributes its commands through the `clipfeat.commands` entry-point group of
setup.cfg (manifests: manifest; pipeline: extract, render-views; features: info, verify, ls,
export, import, copy; trainers: train, eval), so this root group imports no layer above it.
Heavy libraries are imported inside command bodies so `clipfeat --help` stays fast and never
imports torch or ray. Any `ClipfeatError` becomes `Error: <one line>` with exit code 2.
"""

from __future__ import annotations

import click

from clipfeat.common.errors import ClipfeatError
from clipfeat.features.schema import clipfeat_version


class UserError(click.ClickException):
    """A problem the user can fix: printed as one line, exit code 2 (bad usage)."""

    exit_code = 2


class ClipfeatGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ClipfeatError as e:  # every clipfeat error (manifests' and images' included) is one
            err = UserError(str(e))
            err.exit_code = getattr(e, "exit_code", 2)  # 2: bad usage/input; 1: the job itself failed
            raise err from None


@click.group(cls=ClipfeatGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(clipfeat_version(), "--version", prog_name="clipfeat")
def cli() -> None:
    """clipfeat: CLIP grid and pooled features for V&L datasets, in shared Zarr stores.

    \b
    Typical use:
      clipfeat extract --dataset coco --root DATA/coco --model RN50x4 --pretrained openai \\
                       --out features/coco-RN50x4.zarr
      clipfeat info features/coco-RN50x4.zarr
      clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa
      clipfeat extract --dataset r2r --root DATA/matterport --model RN50x4 --pretrained openai \\
                       --out features/r2r-RN50x4.zarr
      clipfeat train nav --features features/r2r-RN50x4.zarr --data DATA/r2r
      clipfeat verify features/coco-RN50x4.zarr
      clipfeat ls s3://team-bucket/features/

    \b
    `clipfeat COMMAND --help` shows examples; README.md's "Dataset layouts" shows what --root and --data hold.
    """


COMMAND_GROUP = "clipfeat.commands"
# Help lists commands alphabetically; this order only decides which layer wins a name clash (none do).
_LAYERS = ("manifests", "extract", "render", "features", "trainers")


def _register() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}
    for name in sorted(eps, key=lambda n: (_LAYERS.index(n) if n in _LAYERS else len(_LAYERS), n)):
        for cmd in eps[name].load():
            cli.add_command(cmd)


_register()


def main() -> None:
    cli(prog_name="clipfeat")


if __name__ == "__main__":
    main()
