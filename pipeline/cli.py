"""The `clipfeat` command. Subcommands only parse arguments and call the library.

Each package contributes its commands (manifests: manifest; pipeline: extract; features:
info, verify, ls, export, import, copy; trainers: train, eval).
Heavy libraries are imported inside command bodies so `clipfeat --help` stays fast and never
imports torch or ray. Any `ClipfeatError` becomes `Error: <one line>` with exit code 2.
"""

from __future__ import annotations

import click

from clipfeat.features.errors import ClipfeatError
from clipfeat.features.schema import clipfeat_version
from clipfeat.manifests.manifest import ManifestError


class UserError(click.ClickException):
    """A problem the user can fix: printed as one line, exit code 2 (bad usage)."""

    exit_code = 2


class ClipfeatGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ClipfeatError, ManifestError) as e:
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


def _register() -> None:
    from clipfeat.features.cli import COMMANDS as feature_commands
    from clipfeat.manifests.cli import COMMANDS as manifest_commands
    from clipfeat.trainers.cli import COMMANDS as trainer_commands

    from .extract_cli import COMMANDS as pipeline_commands
    from .render_cli import COMMANDS as render_commands

    for cmd in [*manifest_commands, *pipeline_commands, *render_commands, *feature_commands, *trainer_commands]:
        cli.add_command(cmd)


_register()


def main() -> None:
    cli(prog_name="clipfeat")


if __name__ == "__main__":
    main()
