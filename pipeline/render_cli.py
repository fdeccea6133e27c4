"""`clipfeat render-views`: one viewpoint's 36 simulator views as JPEGs, plus a contact sheet."""

from __future__ import annotations

import os

import click

SHEET_THUMB = (160, 120)  # contact-sheet cell (width, height)


@click.command("render-views")
@click.option("--root", required=True, help="Matterport folder holding v1/scans/{scan}/matterport_skybox_images/ (and connectivity/).")
@click.option("--scan", required=True, help="Scan id, e.g. 17DRP5sb8fy.")
@click.option("--viewpoint", required=True, help="Viewpoint: an image_id of the scan's connectivity graph.")
@click.option("--out", required=True, help="Folder for {scan}_{viewpoint}_{ix:02d}.jpg and {scan}_{viewpoint}_sheet.png.")
@click.option("--connectivity", help="Folder of {scan}_connectivity.json (the simulator's connectivity/).  [default: ROOT/connectivity]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def render_views_cmd(root: str, scan: str, viewpoint: str, out: str, connectivity: str | None, device: str) -> None:
    """Render a viewpoint's 36 discretised views as the Matterport3D simulator shows them.

    \b
    clipfeat render-views --root DATA/matterport --scan 17DRP5sb8fy \\
                          --viewpoint 10c252c90fa24ef3b698c6f54d984c5c --out views/
    640x480 RGB, 60 degree vertical field of view; view ix looks (ix // 12 - 1) * 30 degrees up,
    at heading (ix % 12) * 30 degrees clockwise from world +y. The contact sheet's rows are
    elevation +30, 0, -30 (top to bottom), its columns the headings.
    """
    import numpy as np
    import torch
    from PIL import Image

    from .panorama import HEADING_COUNT, PanoramaError, load_pose, load_skybox, render_views

    if not os.path.isdir(root):
        raise click.UsageError(f"--root {root} is not a folder; pass the folder that holds v1/scans/{{scan}}/")
    skyboxes = os.path.join(root, "v1", "scans", scan, "matterport_skybox_images")
    if not os.path.isdir(skyboxes):
        raise click.UsageError(f"no skybox folder {skyboxes}; check --scan, and unzip the scan's matterport_skybox_images.zip there")
    graph = os.path.join(connectivity or os.path.join(root, "connectivity"), f"{scan}_connectivity.json")
    if not os.path.isfile(graph):
        raise click.UsageError(f"no connectivity file {graph}; pass --connectivity FOLDER (the simulator's connectivity/)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda was asked but this machine has no usable GPU; use --device cpu")
    try:
        pose = load_pose(graph, viewpoint)
        faces = load_skybox(skyboxes, viewpoint)  # [6, S, S, 3] uint8
    except PanoramaError as e:
        raise click.UsageError(str(e)) from None
    batch = torch.from_numpy(faces).to(device).permute(0, 3, 1, 2)[None]  # [1, 6, 3, S, S]
    views = render_views(batch, pose[None])[0].permute(0, 2, 3, 1).cpu().numpy()  # [36, H, W, 3]

    os.makedirs(out, exist_ok=True)
    tw, th = SHEET_THUMB
    sheet = Image.new("RGB", (HEADING_COUNT * tw, 3 * th))
    for ix, view in enumerate(views):
        img = Image.fromarray(np.ascontiguousarray(view))
        img.save(os.path.join(out, f"{scan}_{viewpoint}_{ix:02d}.jpg"), quality=95)
        row = 2 - ix // HEADING_COUNT  # +30 degrees on top
        sheet.paste(img.resize(SHEET_THUMB, Image.Resampling.BILINEAR, reducing_gap=2.0), ((ix % HEADING_COUNT) * tw, row * th))
    sheet_path = os.path.join(out, f"{scan}_{viewpoint}_sheet.png")
    sheet.save(sheet_path)
    click.echo(f"wrote {len(views)} views of {scan}/{viewpoint} ({views.shape[2]}x{views.shape[1]}) and {sheet_path}")


COMMANDS = [render_views_cmd]
