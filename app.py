"""CycleCodec comparison app: `python app.py`, then open http://127.0.0.1:7860.

Upload a photo, pick a code size: the cycle model writes a real .cyc file, and each classical
codec is matched to the same number of bytes. Everything the browser shows is the decoded
pixels, sent as PNG (lossless), so the comparison is honest to the byte and to the pixel.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from cycleapp import checkpoint as ckpts
from cycleapp.classical import CODECS
from cycleapp.compare import COLUMNS, compare
from cycleapp.imageio import ImageReadError, load_rgb
from cycleapp.plots import LABELS, rd_figure
from cycleapp.sweeps import as_columns, classical_curve, cycle_curve

EXAMPLES = Path(__file__).resolve().parent / "cycleapp" / "examples"
MAX_PIXELS = 4_000_000  # larger uploads are downscaled (with a note) to keep answers fast
MAX_UPLOAD = "25mb"
DEFAULT_CODECS = ["jpeg", "jpeg2000"]
ZOOM = 128  # side of the zoomed crop, in original pixels


def size_choices() -> list[tuple[str, str]]:
    return [(ckpts.by_name(p.stem).describe().replace("\t", " | "), p.stem) for p in ckpts.available()]


def read_upload(path: str | None) -> tuple[np.ndarray, str]:
    """The uploaded image as RGB, downscaled if huge; gr.Error with a readable reason otherwise."""
    if not path:
        raise gr.Error("Please upload an image (PNG, JPEG, WebP, AVIF, HEIC, TIFF or BMP) or pick an example.")
    if os.path.getsize(path) == 0:
        raise gr.Error("The uploaded file is empty.")
    try:
        rgb = load_rgb(path)
    except ImageReadError as e:
        raise gr.Error(f"Could not read this file as an image: {e}") from None
    h, w = rgb.shape[:2]
    if h * w <= MAX_PIXELS:
        return rgb, ""
    scale = (MAX_PIXELS / (h * w)) ** 0.5
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    small = np.array(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    return small, f"The image ({w}x{h}) was downscaled to {size[0]}x{size[1]} (limit {MAX_PIXELS:,} pixels)."


def zoom_window(rgb: np.ndarray) -> tuple[int, int, int]:
    """Top, left and side of the most detailed square region: where codecs differ most."""
    h, w = rgb.shape[:2]
    side = min(ZOOM, h, w)
    gray = rgb.astype(np.float32).mean(axis=2)
    detail = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1, :]
    best, top, left = -1.0, 0, 0
    step = max(1, side // 4)
    for t in range(0, max(1, h - side + 1), step):
        for l in range(0, max(1, w - side + 1), step):
            score = float(detail[t:t + side - 1, l:l + side - 1].sum())
            if score > best:
                best, top, left = score, t, l
    return top, left, side


def zoom(rgb: np.ndarray, window: tuple[int, int, int], factor: int = 3) -> np.ndarray:
    top, left, side = window
    crop = rgb[top:top + side, left:left + side]
    return np.repeat(np.repeat(crop, factor, axis=0), factor, axis=1)  # nearest neighbour: no smoothing


def code_view(ckpt, rgb: np.ndarray, channels: int = 16) -> np.ndarray:
    """The first channels of the quantised code, tiled in a 4x4 grid (grey = 0)."""
    from cycleapp.codec import quantized_code

    code = quantized_code(ckpt, rgb)[0, :channels].numpy()
    c, h, w = code.shape
    peak = max(1.0, float(np.abs(code).max()))
    tiles = np.full((4 * (h + 1), 4 * (w + 1)), 0.5, dtype=np.float32)
    for i in range(c):
        r, q = divmod(i, 4)
        tiles[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = 0.5 + 0.5 * code[i] / peak
    img = (tiles * 255).round().astype(np.uint8)
    scale = max(1, 384 // img.shape[1])
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def save_png(rgb: np.ndarray, path: Path) -> str:
    """Lossless PNG, fast compression: the sliders and downloads serve these very files, so the
    browser gets the decoded pixels bit for bit and nothing is encoded twice."""
    Image.fromarray(rgb).save(path, format="PNG", compress_level=1)
    return str(path)


def run_compare(image_file, code_size, codecs):
    """The /compare endpoint: table, .cyc file, lossless reconstructions, sliders, zooms, code view."""
    rgb, note = read_upload(image_file)
    if code_size not in dict((v, k) for k, v in size_choices()):
        raise gr.Error(f"Unknown code size '{code_size}'.")
    codecs = [c for c in (codecs or []) if c]
    try:
        results = compare(rgb, ckpts.by_name(code_size), codecs)
    except ValueError as e:
        raise gr.Error(str(e)) from None
    out_dir = Path(tempfile.mkdtemp(prefix="cyclecodec-"))
    stem = Path(image_file).stem[:40] or "image"
    cyc_path = out_dir / f"{stem}.{code_size}.cyc"
    cyc_path.write_bytes(results[0].data)
    original_path = save_png(rgb, out_dir / f"{stem}.original.png")
    recon_paths = [save_png(r.reconstruction, out_dir / f"{stem}.{r.codec}.png") for r in results]
    rows = [r.row(rgb) for r in results]
    table = [[row[k] if row[k] is not None else "n/a" for k in COLUMNS] for row in rows]
    for line in table:
        for i, k in enumerate(COLUMNS):
            if isinstance(line[i], float):
                line[i] = round(line[i], 4 if k in ("bpp", "ssim", "ms_ssim") else 2)
    by_codec = {r.codec: (r, path) for r, path in zip(results, recon_paths)}
    sliders = []
    for name in ["cycle", *CODECS]:
        r, path = by_codec.get(name, (None, None))
        sliders.append(gr.update(value=(original_path, path), visible=True,
                                 label=f"original | {LABELS[name]} ({len(r.data):,} bytes)")
                       if r else gr.update(value=None, visible=False))
    window = zoom_window(rgb)
    zooms = [(zoom(rgb, window), "original")] + [(zoom(r.reconstruction, window), LABELS[r.codec]) for r in results]
    notes = [note] + [f"{LABELS[r['codec']]}: {r['note']}" for r in rows if r["note"]]
    status = " ".join(n for n in notes if n) or "All codecs matched to the .cyc file's size within 3 %."
    return (status, table, str(cyc_path), recon_paths, *sliders, zooms,
            code_view(ckpts.by_name(code_size), rgb))


def run_rd_plot(image_file, code_size, codecs, table):
    """Rate-distortion curves of this image for every codec, the matched points starred."""
    rgb, _ = read_upload(image_file)
    curves = {"cycle": as_columns(cycle_curve(rgb))}
    for name in codecs or []:
        curves[name] = as_columns(classical_curve(name, rgb))
    marks = {}
    rows = table.values.tolist() if hasattr(table, "values") else (table or [])
    for row in rows:
        record = dict(zip(COLUMNS, row))
        if record.get("psnr") not in (None, "n/a"):
            marks[record["codec"]] = (float(record["bpp"]), float(record["psnr"]))
    return rd_figure(curves, marks, title=f"this image, matched at the '{code_size}' .cyc size (stars)")


def build() -> gr.Blocks:
    choices = size_choices()
    with gr.Blocks(title="CycleCodec") as demo:
        gr.Markdown("# CycleCodec\nA learned image codec built on cycle consistency, against JPEG, JPEG 2000 "
                    "and friends **at the same file size**. Every number comes from a real file; every "
                    "image shown is the decoded pixels, sent losslessly.")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.File(label="Image (PNG, JPEG, WebP, AVIF, HEIC, TIFF, BMP)",
                                file_types=["image", ".heic", ".heif", ".avif", ".tif", ".tiff"],
                                type="filepath", elem_id="upload")
                code_size = gr.Dropdown(choices, value=choices[len(choices) // 2][1] if choices else None,
                                        label="Code size (checkpoint)", elem_id="code-size")
                codecs = gr.CheckboxGroup([(LABELS[n], n) for n in CODECS], value=DEFAULT_CODECS,
                                          label="Compare with", elem_id="codecs")
                run = gr.Button("Compress and compare", variant="primary", elem_id="run")
                gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("*.png"))], inputs=[image])
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                table = gr.Dataframe(headers=COLUMNS, label="Results (bpp = 8 x file bytes / pixels)",
                                     interactive=False, elem_id="results")
                with gr.Row():
                    cyc_file = gr.File(label=".cyc file", elem_id="cyc-file")
                    recon_files = gr.File(label="Reconstructions (PNG, lossless)", file_count="multiple")
        gr.Markdown("Drag the handle: original on the left, decoded on the right, all at the same file size.")
        sliders = []
        names = ["cycle", *CODECS]
        for pair in range(0, len(names), 2):
            with gr.Row(equal_height=True):
                for n in names[pair:pair + 2]:
                    sliders.append(gr.ImageSlider(label=f"original | {LABELS[n]}", format="png", type="numpy",
                                                  visible=n in ["cycle", *DEFAULT_CODECS], interactive=False,
                                                  elem_id=f"slider-{n}", max_height=420))
        with gr.Row():
            zooms = gr.Gallery(label="Zoom x3 on the most detailed region (nearest neighbour)", format="png",
                               columns=4, height=260, elem_id="zooms")
            code_img = gr.Image(label="The code: first 16 channels (grey = 0)", format="png",
                                interactive=False, elem_id="code-view")
        plot = gr.Plot(label="Rate-distortion on this image", elem_id="rd-plot")
        outputs = [status, table, cyc_file, recon_files, *sliders, zooms, code_img]
        run.click(run_compare, [image, code_size, codecs], outputs, api_name="compare",
                  concurrency_limit=1).success(run_rd_plot, [image, code_size, codecs, table], plot,
                                               api_name="rd_plot", concurrency_limit=1)
    return demo


if __name__ == "__main__":
    build().queue(max_size=20).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=MAX_UPLOAD,
    )
