"""CycleCodec comparison app: `python app.py`, then open http://127.0.0.1:7860.

Upload a photo, pick a code size (or type a target size in KB): the learned codec writes a real
.cyc file, and each other codec is matched to the same number of bytes. Everything the browser shows is the decoded
pixels, sent as PNG (lossless), so the comparison is honest to the byte and to the pixel.

This file is layout and wiring; the codecs, their names and labels come from the registry
(cycleapp/codecs.py), the measuring from cycleapp/compare.py, and the app's logic is in cycleapp/
(ui.py: uploads, sizes, table, status, code view; inspector.py: the synchronised zoom/pan viewer and
error maps; rdplot.py: the plot; outputs.py: the run folders and what a run writes).
"""
from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from cycleapp import codecs as registry
from cycleapp import inspector, outputs, ui
from cycleapp.compare import compare
from cycleapp.measure import COLUMNS
from cycleapp.rdplot import making_a_table, rd_plot, table_marks

EXAMPLES = Path(__file__).resolve().parent / "cycleapp" / "examples"
MAX_UPLOAD = "25mb"
DEFAULT_CODECS = ["jpeg", "jpeg2000"]
LABELS = registry.labels()
OUT_ROOT = Path(get_upload_folder()) / "cyclecodec"  # served by Gradio: the inspector loads these PNGs
# How long a result lives (Gradio's delete_cache, for uploads and served files, and the run folders
# alike), and how much the run folders may hold: about 800 runs of a 768x512 photo (2.5 MB each with
# JPEG and JPEG 2000), or 75 of a 4-megapixel one (26 MB).
RESULT_AGE = 3600
OUTPUT_CAP = 2_000_000_000
RUNS = outputs.RunFolders(OUT_ROOT, OUTPUT_CAP, min_age=60, max_age=RESULT_AGE)
BUSY = ("The server is busy: too many results were made in the last minute to keep another. "
        "Please try again in a minute.")
IDLE = ui.status_html("idle", ["Upload an image (or click an example below it), pick a code size and the "
                               "codecs, then press Compress and compare."])
log = logging.getLogger("cyclecodec")

# The last error of each browser session, for the status area (the failure step reads it).
_errors: OrderedDict[str, str] = OrderedDict()


def fail(request: gr.Request | None, message: str):
    if request is not None and request.session_hash:
        _errors[request.session_hash] = message
        while len(_errors) > 512:
            _errors.popitem(last=False)
    raise gr.Error(message, print_exception=False)


def run_compare(image_file, code_size, codecs, target_kb=None, request: gr.Request = None):
    """The /compare endpoint: status, table, .cyc file, lossless reconstructions (table order), then
    the table as HTML, the inspector and the code view. `target_kb` (optional, after the codecs so
    that calls with three inputs still work) replaces the code size by a target file size."""
    start = time.perf_counter()
    try:
        rgb, note = ui.read_upload(image_file)
        size = ui.resolve_size(code_size, target_kb)
        codecs = [c for c in (codecs or []) if c]
        with making_a_table(), RUNS.run(outputs.run_bytes(rgb, len(codecs)),
                                        request.session_hash if request else None) as out_dir:
            results = compare(rgb, size.reference, codecs)
            rows = [r.row() for r in results]
            files = outputs.write_run(out_dir, ui.safe_stem(image_file), rgb, results, rows, LABELS)
    except Exception as e:
        fail(request, explain(e, image_file, "comparison"))
    cyc_path, recon_paths, view = files
    status = ui.status_html("ok", ui.success_lines(rows, note, time.perf_counter() - start, size.target_bytes))
    return (status, ui.api_table(rows, COLUMNS), cyc_path, recon_paths, ui.results_html(rows), view,
            ui.code_view_html(results[0].entry.code(results[0].data)))


def explain(e: Exception, image_file, what: str) -> str:
    """What the user is told when a run fails (called in the except block): never a server path."""
    if isinstance(e, ui.UserError):
        return str(e)
    if isinstance(e, outputs.Busy):
        log.warning("run refused: %s", e)
        return BUSY
    if isinstance(e, ValueError):  # the library's own refusals (e.g. an unknown codec name)
        return ui.clean_message(e, image_file).capitalize() + "."
    log.exception("%s failed", what)  # a bug: the log has the traceback, the user a message
    return f"The {what} failed: " + ui.clean_message(f"{type(e).__name__}: {e}", image_file)


def run_rd_plot(image_file, code_size, codecs, table):
    """Rate-distortion curves of this image for every codec (the table's matched points starred).

    Run without Gradio's preprocessing: the table arrives as sent ({"headers", "data"}), so a
    malformed one gets a message saying what is wrong, not a failed conversion."""
    image_file = image_file.get("path") if isinstance(image_file, dict) else image_file
    try:
        rgb, _ = ui.read_upload(image_file)
        codecs = [c for c in (codecs or []) if c]
        registry.check(codecs, registry.matchable())
        marks, table_size = table_marks(table)
        code_size = table_size or code_size  # the code size the table's file used (a target may choose)
        ui.resolve_size(code_size)
        return rd_plot(rgb, codecs, code_size, marks)
    except Exception as e:  # the status keeps the comparison's result; the message is a toast
        raise gr.Error(explain(e, image_file, "plot"), print_exception=False)


# While a run waits and works, Gradio's progress line ("queue: 3/5 | 4.1/9.8s", then "processing |
# ...") is drawn in the status area, under these words, which say how to read it.
WORKING = ui.status_html("working", [
    f"Waiting for a turn, then compressing with {LABELS[registry.LEARNED]} and setting each codec to the "
    "same file size...",
    "One comparison runs at a time. Below: \"queue: 3/5\" is your place in the queue and its length, "
    "then the seconds so far and the time expected; \"processing\" once yours runs."])
# Gradio's progress line as a legible line of its own at the foot of the status area (not over the
# words, which stay at full strength while the run is pending).
QUEUE_CSS = """
#status .html-container.pending { opacity: 1; }
#status .status-working { padding-bottom: 2.4em; }
#status [data-testid="status-tracker"] { bottom: 0; }
#status [data-testid="status-tracker"] .progress-text { top: auto; bottom: 18px; left: 27px; right: auto;
  transform: none; padding: 0; font-size: var(--text-md); font-weight: 600; background: none; }
"""


def start_run():
    """Before a run: the previous results go away, the status says what is happening."""
    return WORKING, gr.update(visible=False), gr.update(visible=False), None


def page_closed(request: gr.Request):
    """A tab closed: its latest results are no longer shown, so their folder may go first."""
    RUNS.closed(request.session_hash if request else None)


def show_failure(request: gr.Request):
    message = _errors.pop(request.session_hash, None) if request else None
    return ui.status_html("error", [message or "The comparison did not run: the server's queue may be full "
                                               "or the connection was lost. Please try again in a minute."])


def build() -> gr.Blocks:
    choices = ui.size_choices()
    with gr.Blocks(title="CycleCodec", delete_cache=(600, RESULT_AGE)) as demo:
        gr.Markdown("# CycleCodec\nA learned image codec built on cycle consistency, against JPEG, JPEG 2000 "
                    "and friends **at the same file size**. Every number comes from a real file; every "
                    "image shown is the decoded pixels, sent losslessly.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                image = gr.File(label="Image (PNG, JPEG, WebP, AVIF, HEIC, TIFF, BMP)",
                                file_types=["image", ".heic", ".heif", ".avif", ".tif", ".tiff"],
                                type="filepath", elem_id="upload")
                code_size = gr.Dropdown(choices, value=choices[len(choices) // 2][1] if choices else None,
                                        label="Code size", info=ui.SIZE_INFO, elem_id="code-size")
                # A textbox, not gr.Number: a Number field shows and sends 0 when empty, and empty
                # must mean "use the preset".
                target_kb = gr.Textbox("", label="Target size (KB, optional)", placeholder="e.g. 20",
                                       info="Empty: the code size above. A number: the file is made this "
                                            "size (1 KB = 1000 bytes, within 3 %), the code size chosen "
                                            "for you.", elem_id="target-kb", max_lines=1)
                codecs = gr.CheckboxGroup([(LABELS[n], n) for n in registry.matchable()], value=DEFAULT_CODECS,
                                          label="Compare with", info="Each is set to the .cyc file's size.",
                                          elem_id="codecs")
                run = gr.Button("Compress and compare", variant="primary", elem_id="run")
                gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("*.png"))], inputs=[image])
            with gr.Column(scale=2, min_width=300):
                status = gr.HTML(IDLE, elem_id="status", container=False)
                with gr.Column(visible=False, elem_id="results-box") as results_box:
                    results_view = gr.HTML(elem_id="results-view")
                    with gr.Row():
                        cyc_file = gr.File(label=".cyc file", elem_id="cyc-file", min_width=160)
                        recon_files = gr.File(label="Reconstructions (PNG, lossless)", file_count="multiple",
                                              elem_id="recon-files", min_width=160)
                    with gr.Accordion("All numbers, as the API returns them", open=False):
                        table = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="results")
        with gr.Column(visible=False, elem_id="inspect-box") as inspect_box:
            gr.Markdown("### Inspect the pixels")
            inspect = gr.HTML(elem_id="inspector", css_template=inspector.CSS, js_on_load=inspector.JS)
            with gr.Row():
                with gr.Column(scale=2, min_width=300):
                    plot = gr.Plot(label="Rate-distortion on this image", elem_id="rd-plot")
                with gr.Column(scale=1, min_width=240):
                    code_view = gr.HTML(elem_id="code-view")
        boxes = [results_box, inspect_box]  # hidden before a run and after a failed one
        outputs = [status, table, cyc_file, recon_files, results_view, inspect, code_view]
        compared = (
            run.click(start_run, None, [status, *boxes, plot], queue=False, api_visibility="private")
            .then(run_compare, [image, code_size, codecs, target_kb], outputs, api_name="compare",
                  concurrency_limit=1, concurrency_id="compare", show_progress_on=[status],
                  show_progress="minimal")
        )
        compared.failure(show_failure, None, status, queue=False, api_visibility="private")
        (compared.success(lambda: [gr.update(visible=True)] * len(boxes), None, boxes, queue=False,
                          api_visibility="private")
         .success(run_rd_plot, [image, code_size, codecs, table], plot, api_name="rd_plot",
                  concurrency_limit=1, concurrency_id="rd_plot", preprocess=False))
        demo.unload(page_closed)
    return demo


if __name__ == "__main__":
    build().queue(max_size=20).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=MAX_UPLOAD, css=ui.PAGE_CSS + QUEUE_CSS,
    )
