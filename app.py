"""CycleCodec comparison app: `python app.py`, then open http://127.0.0.1:7860.

Upload a photo, pick a code size (or type a target size in KB): the learned codec writes a real
.cyc file, and each other codec is matched to the same number of bytes, or to the same quality (PSNR
or MS-SSIM); a verdict above the table says who wins, and every codec's file can be downloaded.
Everything the browser shows is the decoded pixels, sent as PNG (lossless), so the comparison is
honest to the byte and to the pixel.

This file is layout and wiring: `App` holds what the app keeps between requests (run folders,
measurements kept for re-runs, each page's last error, the plots' curves) and its handlers, and
`build` lays out the page and wires them. The codecs, their names and labels come from the registry
(cycleapp/evaluation/registry.py), the measuring from cycleapp/evaluation/compare.py (who wins, and
the stars: evaluation/verdict.py), and the app's logic is in cycleapp/app/ (ui.py: uploads, sizes,
table, status, code view; inspector.py: the synchronised zoom/pan viewer and error maps; rdplot.py:
the plot; outputs.py: the run folders and what a run writes; owners.py: which run folders a process
that no longer runs left behind).
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from cycleapp.app import owners

# The run folders live in Gradio's upload folder (found as gradio.utils.get_upload_folder finds it,
# without importing gradio yet), which Gradio serves: the inspector loads these PNGs.
OUT_ROOT = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir(), "gradio").resolve()) / "cyclecodec"
if __name__ == "__main__":  # first of all, before gradio and torch take seconds to import
    print(f"Removed {owners.remove_leftovers(OUT_ROOT)} run folders left by processes that no longer run.",
          flush=True)

import gradio as gr  # noqa: E402

from cycleapp.core import learned  # noqa: E402
from cycleapp.evaluation import registry  # noqa: E402
from cycleapp.app import inspector, outputs, ui  # noqa: E402
from cycleapp.app.rdplot import Plots, learned_file, table_marks  # noqa: E402
from cycleapp.evaluation.compare import Kept, compare  # noqa: E402
from cycleapp.evaluation.measure import COLUMNS  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent / "cycleapp" / "examples"
MAX_UPLOAD = "25mb"
DEFAULT_CODECS = ["jpeg", "jpeg2000"]
LABELS = registry.labels()
# How long a result lives (Gradio's delete_cache, for uploads and served files, and the run folders
# alike), and how much the run folders may hold: about 800 runs of a 768x512 photo (2.5 MB each with
# JPEG and JPEG 2000), or 75 of a 4-megapixel one (26 MB).
RESULT_AGE = 3600
OUTPUT_CAP = 2_000_000_000
BUSY = ("The server is busy: too many results were made in the last minute to keep another. "
        "Please try again in a minute.")
IDLE = ui.status_html("idle", ["Upload an image (or click an example below it), pick a code size and the "
                               "codecs, then press Compress and compare."])
log = logging.getLogger("cyclecodec")
WORKERS = os.cpu_count() or 1  # codecs matched at once (each codec's library releases the GIL)
OUTPUTS = ["status", "table", "cyc_file", "recon_files", "results_view", "inspect", "code_view", "codec_files"]
# While a run waits and works, Gradio's progress line ("queue: 3/5 | 4.1/9.8s", then "processing |
# ...") is drawn in the status area, under these words, which say how to read it.
WORKING = ui.status_html("working", [
    f"Waiting for a turn, then compressing with {LABELS[learned.LEARNED]} and matching each codec to "
    "its file...",
    "One comparison runs at a time. Below: \"queue: 3/5\" is your place in the queue and its length, "
    "then the seconds so far and the time expected; once yours runs, this says what is being done."])
# Gradio's progress line as a legible line of its own at the foot of the status area (not over the
# words, which stay at full strength while the run is pending).
QUEUE_CSS = """
#status .html-container.pending { opacity: 1; }
#status .status-working { padding-bottom: 2.4em; }
#status [data-testid="status-tracker"] { bottom: 0; }
#status [data-testid="status-tracker"] .progress-text { top: auto; bottom: 18px; left: 27px; right: auto;
  transform: none; padding: 0; font-size: var(--text-md); font-weight: 600; background: none; }
"""
# On a phone the status area is below the inputs: bring it into view as a run starts.
SHOW_STATUS_JS = """() => { const s = document.getElementById('status');
  if (s && s.getBoundingClientRect().top > window.innerHeight - 120) s.scrollIntoView({block: 'start'}); }"""


def start_run():
    """Before a run: the previous results go away, the status says what is happening, the button
    waits for the run's end."""
    return WORKING, gr.update(visible=False), gr.update(visible=False), None, gr.update(interactive=False)


def upload_path(image_file):
    """The upload's path, from a path or from the file as sent (/compare and /rd_plot take their
    inputs without Gradio's preprocessing; Gradio has put the file in its cache all the same)."""
    return image_file.get("path") if isinstance(image_file, dict) else image_file


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


class App:
    """What one app keeps between requests, and its handlers (methods, wired by `build`): the run
    folders, the measurements kept for re-runs, the last error of each page, the plots' curves and
    the bound on uploads checked at once. Nothing of it lives in a module: each `build()` (a
    test's, the server's) has its own."""

    def __init__(self, runs: outputs.RunFolders | None = None):
        self.runs = runs or outputs.RunFolders(OUT_ROOT, OUTPUT_CAP, min_age=60, max_age=RESULT_AGE)
        # What earlier runs measured: a re-run of an image with one more codec, or in the other mode,
        # measures only what is new (at most 400 MB of files, reconstructions and originals).
        self.kept = Kept(400_000_000)
        self.errors = ui.LastErrors(512)  # the last error of each browser session, for the status area
        self.plots = Plots()
        # Checks run at once, outside the queue, however long it is; a few uploads decoded at a time
        # bound their memory (a 25 MB upload may decode to 400 MB) and still answer a crowd within a
        # second or two.
        self.checking = threading.BoundedSemaphore(2)

    def fail(self, request: gr.Request | None, message: str):
        if request is not None and request.session_hash:
            self.errors.put(request.session_hash, message)
        raise gr.Error(message, print_exception=False)

    def run_compare(self, image_file, code_size, codecs, target_kb=None, match=None, request: gr.Request = None):
        """The /compare endpoint: status, table, .cyc file, lossless reconstructions (table order), the
        verdict, table and download links as HTML, the inspector, the code view, then every codec's own
        file (table order, the .cyc first). `target_kb` and `match` are optional, after the codecs, so
        that calls with three inputs still work: a target size replaces the code size, and `match`
        ('size', the default, 'psnr' or 'ms_ssim') is what the other codecs are matched to. A generator:
        the status area says what is being done as it goes; an API client gets the last answer."""
        start = time.perf_counter()
        image_file = upload_path(image_file)
        try:
            rgb, note = ui.read_upload(image_file)
            size = ui.resolve_size(code_size, target_kb)
            match = ui.resolve_match(match)
            codecs = [c for c in (codecs or []) if c]
            with self.plots.making_a_table(), self.runs.run(outputs.run_bytes(rgb, len(codecs)),
                                                            request.session_hash if request else None) as out_dir:
                def work(report):
                    writer = outputs.RunWriter(out_dir, ui.safe_stem(image_file), rgb)
                    results = compare(rgb, size.reference, codecs, match, WORKERS, report, self.kept, writer.add)
                    report("Writing the inspector's views")
                    rows = [r.row() for r in results]
                    return results, rows, writer.finish(results, rows, LABELS)

                def working(line: str):
                    return ui.status_html("working", [f"{line}..."]), *[gr.skip()] * (len(OUTPUTS) - 1)

                results, rows, files = yield from ui.progress_steps(work, working)
        except Exception as e:
            self.fail(request, explain(e, image_file, "comparison"))
        status = ui.status_html("warn" if ui.missed_target(rows, size.target_bytes) else "ok",
                                ui.success_lines(rows, note, time.perf_counter() - start, size.target_bytes, match))
        page = (ui.results_html(rows, match, parallel=WORKERS > 1 and len(codecs) > 1)
                + ui.downloads_html(files.codec_files, files.reconstructions))
        ours = results[0].entry  # a view of its code where the codec has one (a layered file's is not shown)
        code_view = ui.code_view_html(ours.code(results[0].data)) if hasattr(ours, "code") else ""
        yield (status, ui.api_table(rows, COLUMNS), files.cyc, files.reconstructions, page, files.view, code_view,
               [path for _, path, _ in files.codec_files])

    def run_rd_plot(self, image_file, code_size, codecs, table):
        """Rate-distortion curves of this image for every codec (the table's files starred).

        Run without Gradio's preprocessing: the table arrives as sent ({"headers", "data"}), so a
        malformed one gets a message saying what is wrong, not a failed conversion."""
        image_file = upload_path(image_file)
        try:
            rgb, _ = ui.read_upload(image_file)
            codecs = [c for c in (codecs or []) if c]
            registry.check(codecs, registry.matchable())
            marks, setting = table_marks(table)
            if setting is None:  # no table: the code size's own file
                made = ui.resolve_size(code_size).preset
            else:  # the file the table measured (a target size may have chosen its code size and steps)
                made = learned_file(setting)
            return self.plots.rd_plot(rgb, codecs, made, marks)
        except Exception as e:  # the status keeps the comparison's result; the message is a toast
            raise gr.Error(explain(e, image_file, "plot"), print_exception=False)

    def input_problems(self, image_file, code_size, codecs, target_kb=None, match=None) -> list[str]:
        """What is wrong with a comparison request, one message per input ('' where nothing is): all
        that can be refused without the model (the upload read and decoded, the size asked for, the
        codec names), so that it is refused before the queue."""
        image_file = upload_path(image_file)
        problems = [""] * 5
        try:
            with self.checking:
                ui.read_upload(image_file)
        except Exception as e:
            problems[0] = explain(e, image_file, "check of the upload")
        try:
            ui.resolve_size(code_size, target_kb)
        except Exception as e:
            at_target = target_kb is not None and str(target_kb).strip()
            problems[3 if at_target else 1] = explain(e, image_file, "check of the size")
        try:
            if not isinstance(codecs, (list, tuple, type(None))):  # sent raw by a script: see build()
                raise ui.UserError(f"The codecs must be a list of names (from {', '.join(registry.matchable())}).")
            registry.check([str(c) for c in (codecs or []) if c], registry.matchable())
        except Exception as e:
            problems[2] = explain(e, image_file, "check of the codecs")
        try:
            ui.resolve_match(match)
        except Exception as e:
            problems[4] = explain(e, image_file, "check of the comparison")
        return problems

    def validate_compare(self, image_file, code_size, codecs, target_kb=None, match=None):
        """/compare's validator: Gradio runs it as a request arrives, before the queue, and refuses
        the request (an API client gets a ValidationError naming the input) if any input is wrong."""
        problems = self.input_problems(image_file, code_size, codecs, target_kb, match)
        return [gr.validate(not problem, problem) for problem in problems]

    def check_inputs(self, image_file, code_size, codecs, target_kb=None, match=None, request: gr.Request = None):
        """The page's own check before it queues a comparison: a refusal goes to the status area (the
        failure step), where it stays, rather than only beside the input as the validator's would."""
        problems = [p for p in self.input_problems(image_file, code_size, codecs, target_kb, match) if p]
        if problems:
            self.fail(request, " ".join(problems))

    def page_closed(self, request: gr.Request):
        """A tab closed: its latest results are no longer shown, so their folder may go first."""
        self.runs.closed(request.session_hash if request else None)

    def show_failure(self, request: gr.Request):
        message = self.errors.pop(request.session_hash) if request else None
        return ui.status_html("error", [message or "The comparison did not run: the server's queue may be full "
                                                   "or the connection was lost. Please try again in a minute."]), \
            gr.update(interactive=True)


def build(app: App | None = None) -> gr.Blocks:
    """The page, wired to `app`'s handlers (a new App if none is given)."""
    app = app or App()
    choices = ui.size_choices()
    with gr.Blocks(title="CycleCodec", delete_cache=(600, RESULT_AGE)) as demo:
        gr.Markdown("# CycleCodec\nA learned image codec built on cycle consistency, against JPEG, JPEG 2000 "
                    "and friends **at the same file size, or at the same quality**. Every number comes from a real file; every "
                    "image shown is the decoded pixels, sent losslessly.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                image = gr.File(label="Image (PNG, JPEG, WebP, AVIF, HEIC, TIFF, BMP)",
                                file_types=["image", ".heic", ".heif", ".avif", ".tif", ".tiff"],
                                type="filepath", elem_id="upload")
                code_size = gr.Dropdown(choices, value=learned.DEFAULT_CODE_SIZE if choices else None,
                                        label="Code size", info=ui.SIZE_INFO, elem_id="code-size")
                # A textbox, not gr.Number: a Number field shows and sends 0 when empty, and empty
                # must mean "use the preset".
                target_kb = gr.Textbox("", label="Target size (KB, optional)", placeholder="e.g. 20",
                                       info="Empty: the code size above. A number: the file is made this "
                                            "size (1 KB = 1000 bytes, within 3 %), the code size chosen "
                                            "for you.", elem_id="target-kb", max_lines=1)
                codecs = gr.CheckboxGroup([(LABELS[n], n) for n in registry.matchable()], value=DEFAULT_CODECS,
                                          label="Compare with", info="Each is set to the .cyc file's size, "
                                                                     "or to its quality (below).",
                                          elem_id="codecs")
                match = gr.Radio(ui.MATCH_CHOICES, value="size", label="Compare at", elem_id="match",
                                 info="The same file size: which codec looks best. The same quality: how "
                                      "many bytes each codec needs to look as good as ours.")
                run = gr.Button("Compress and compare", variant="primary", elem_id="run")
                gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("*.png"))], inputs=[image])
            with gr.Column(scale=2, min_width=300):
                status = gr.HTML(IDLE, elem_id="status", container=False)
                with gr.Column(visible=False, elem_id="results-box") as results_box:
                    results_view = gr.HTML(elem_id="results-view")
                    # For API clients (the page links to the same files in results_view, byte counts
                    # exact): the .cyc file, the reconstructions, every codec's own file.
                    cyc_file = gr.File(visible=False)
                    recon_files = gr.File(file_count="multiple", visible=False)
                    codec_files = gr.File(file_count="multiple", visible=False)
                    with gr.Accordion("All numbers, as the API returns them", open=False):
                        table = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="results")
        with gr.Column(visible=False, elem_id="inspect-box") as inspect_box:
            gr.Markdown("### Inspect the pixels")
            inspect = gr.HTML(elem_id="inspector", css_template=inspector.CSS, js_on_load=inspector.JS)
            with gr.Row():
                with gr.Column(scale=2, min_width=300):
                    # No label over the figure: it has its own title (a label covered it on a phone).
                    plot = gr.Plot(label="Rate-distortion on this image", show_label=False, elem_id="rd-plot")
                with gr.Column(scale=1, min_width=240):
                    code_view = gr.HTML(elem_id="code-view")
        boxes = [results_box, inspect_box]  # hidden before a run and after a failed one
        outputs = [status, table, cyc_file, recon_files, results_view, inspect, code_view, codec_files]
        inputs = [image, code_size, codecs, target_kb, match]
        # What needs no model is checked before the queue: on the page by a step of its own (its
        # refusal shown in the status area), for API calls by /compare's validator. Without Gradio's
        # preprocessing, which would refuse a value outside a component's choices before the
        # validator could say why (HTTP 400, its reason lost to gradio_client).
        checked = (
            run.click(start_run, None, [status, *boxes, plot, run], queue=False, api_visibility="private",
                      js=SHOW_STATUS_JS)
            .then(app.check_inputs, inputs, None, queue=False, api_visibility="private")
        )
        checked.failure(app.show_failure, None, [status, run], queue=False, api_visibility="private")
        compared = checked.success(app.run_compare, inputs, outputs, api_name="compare", validator=app.validate_compare,
                                   preprocess=False, concurrency_limit=1, concurrency_id="compare", show_progress_on=[status],
                                   show_progress="minimal")
        compared.failure(app.show_failure, None, [status, run], queue=False, api_visibility="private")
        (compared.success(lambda: [gr.update(visible=True)] * len(boxes) + [gr.update(interactive=True)], None,
                          [*boxes, run], queue=False, api_visibility="private")
         .success(app.run_rd_plot, [image, code_size, codecs, table], plot, api_name="rd_plot",
                  concurrency_limit=1, concurrency_id="rd_plot", preprocess=False))
        demo.unload(app.page_closed)
    return demo


if __name__ == "__main__":
    build().queue(max_size=20).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=MAX_UPLOAD, css=ui.PAGE_CSS + QUEUE_CSS,
    )
