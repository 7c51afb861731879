"""The inspector: the original and every codec's decoded pixels, side by side, as a slider or all at
once, with one zoom and pan shared by every view (so 1:1 or 4:1 shows the same pixels everywhere),
and an error heat map per codec. A small HTML/JS component (`gr.HTML` with `js_on_load`): the
images are the lossless PNG files the app writes, drawn with nearest-neighbour scaling when zoomed
in, so what is on screen is the decoded pixels.

Python builds the markup with the data (`inspector_html`); the script (`JS`) builds the views and
keeps them in step. Each view carries `data-source`, `data-region` (the image rectangle it shows,
x0,y0,x1,y1 in image pixels), `data-centre` and `data-scale` (the shared zoom), so tests can check
that every view shows the same region.
"""
from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ERROR_FULL_SCALE = 32  # an error of 32 levels (of 255) or more is drawn at the top of the colour map


def _error_palette() -> tuple[int, ...]:
    """256 RGB entries of matplotlib's 'inferno' (black -> purple -> orange -> yellow)."""
    from matplotlib import colormaps

    lut = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return tuple(lut.reshape(-1).tolist())


PALETTE = _error_palette()  # a constant (a tuple), made once as the module loads: no state to guard


# An error of e levels (0 to 255) drawn at e * 255 / ERROR_FULL_SCALE, rounded, at most 255.
_ERROR_SCALE = np.minimum((np.arange(256) * 255 + ERROR_FULL_SCALE // 2) // ERROR_FULL_SCALE,
                          255).astype(np.uint8)


def error_levels(original: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """Per pixel, the largest absolute error over R, G and B, scaled so ERROR_FULL_SCALE -> 255.
    In 8 bits throughout (max - min is the exact absolute difference) and a table for the scale:
    8 ms for a 2K image, where 32-bit arithmetic took 70."""
    diff = np.maximum(original, decoded)
    diff -= np.minimum(original, decoded)
    return _ERROR_SCALE[np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])]


def save_error_map(original: np.ndarray, decoded: np.ndarray, path: Path) -> str:
    """The error heat map as a palette PNG (lossless, one byte per pixel): black = exact."""
    img = Image.fromarray(error_levels(original, decoded), "L").convert("P")
    img.putpalette(PALETTE)
    img.save(path, format="PNG", compress_level=1)
    return str(path)


@dataclass
class Source:
    id: str  # "original", a codec name, or "err-<codec>"
    label: str  # short: shown on the view
    detail: str  # longer: shown in the menus (bytes, PSNR)
    url: str
    kind: str  # "image" or "error"


def inspector_html(sources: list[Source], width: int, height: int, detail: tuple[int, int],
                   left: str = "original", right: str = "cycle") -> str:
    """The inspector's markup for one comparison; the script builds the views from `data-*`."""
    data = {"w": width, "h": height, "detail": list(detail), "left": left, "right": right,
            "sources": [asdict(s) for s in sources]}
    options = "".join(f"<option value='{html.escape(s.id)}'>{html.escape(s.detail)}</option>"
                      for s in sources)
    zooms = "".join(f"<button type='button' data-zoom='{z}' title='{t}'>{label}</button>" for z, label, t in [
        ("fit", "Fit", "the whole image"), ("1", "1:1", "one image pixel per screen pixel"),
        ("2", "2:1", ""), ("4", "4:1", "each image pixel as a 4x4 square"),
        ("detail", "Detail", "4:1 on the most detailed region")])
    modes = "".join(f"<button type='button' data-mode='{m}'>{label}</button>" for m, label in [
        ("side", "Side by side"), ("slider", "Slider"), ("grid", "All codecs"), ("errors", "All error maps")])
    return (
        f"<div class='insp' data-config='{html.escape(json.dumps(data), quote=True)}'>"
        f"<div class='insp-bar'><div class='insp-modes' role='group' aria-label='layout'>{modes}</div>"
        f"<div class='insp-zoom' role='group' aria-label='zoom'>{zooms}</div>"
        f"<span class='insp-readout' aria-live='polite'></span></div>"
        f"<div class='insp-pick'><label>Left <select class='insp-left'>{options}</select></label>"
        f"<label>Right <select class='insp-right'>{options}</select></label></div>"
        f"<div class='insp-stage'></div>"
        f"<p class='insp-help'>Scroll (or pinch) to zoom, four notches of the wheel for twice the size; drag to pan: every view shows the same region. "
        f"In Slider, drag the white handle. Error maps: the largest error of R, G, B per pixel, black = "
        f"exact, purple = small, yellow = {ERROR_FULL_SCALE} levels (of 255) or more.</p></div>")


CSS = """
.insp { font-size: 14px; }
.insp-bar, .insp-pick { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; margin: 0 0 6px; }
.insp-bar [role=group] { display: inline-flex; flex-wrap: wrap; gap: 4px; }
.insp button { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 3px 9px;
  background: var(--button-secondary-background-fill); color: var(--body-text-color); cursor: pointer; }
.insp button.on { background: var(--color-accent); color: white; border-color: var(--color-accent); }
.insp select { max-width: 100%; padding: 2px 4px; border-radius: 6px; border: 1px solid var(--border-color-primary);
  background: var(--background-fill-primary); color: var(--body-text-color); }
.insp-pick[hidden] { display: none; }
.insp-pick label { display: inline-flex; gap: 6px; align-items: center; max-width: 100%; }
.insp-readout { font-variant-numeric: tabular-nums; color: var(--body-text-color-subdued); }
.insp-stage { display: grid; gap: 6px; }
.insp-cell { min-width: 0; }
.insp-cap { font-size: 12px; line-height: 1.3; padding: 2px 0; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.insp-view { position: relative; overflow: hidden; background: #7f7f7f22; border-radius: 4px;
  touch-action: none; cursor: grab; user-select: none; -webkit-user-select: none; }
.insp-view img { position: absolute; left: 0; top: 0; transform-origin: 0 0; max-width: none !important;
  max-height: none !important; pointer-events: none; }
.insp-view.px img { image-rendering: pixelated; }
.insp-handle { position: absolute; top: 0; bottom: 0; width: 24px; margin-left: -12px; cursor: ew-resize; }
.insp-handle::before { content: ''; position: absolute; left: 11px; top: 0; bottom: 0; width: 2px;
  background: white; box-shadow: 0 0 3px black; }
.insp-handle::after { content: '⇔'; position: absolute; left: 0; top: calc(50% - 12px); width: 24px; height: 24px;
  border-radius: 12px; background: white; color: black; text-align: center; line-height: 24px; }
.insp-tag { position: absolute; top: 4px; padding: 1px 5px; font-size: 11px; border-radius: 4px;
  background: #000a; color: white; pointer-events: none; }
.insp-help { font-size: 12px; color: var(--body-text-color-subdued); margin: 6px 0 0; }
"""

JS = r"""
const S = { cfg: null, mode: 'side', scale: 1, fit: true, cx: 0, cy: 0, split: 0.5, views: [] };
const ptrs = new Map();
let drag = null;

function root() { return element.querySelector('.insp'); }
function url(u) {  // the app's file route, under the app's root (it may be served under a path)
  const base = (window.gradio_config && window.gradio_config.root) || window.location.href;
  return new URL(u, String(base).replace(/\/?$/, '/')).href;
}
function src(id) { return S.cfg.sources.find(s => s.id === id); }

function cells() {
  const all = S.cfg.sources;
  if (S.mode === 'grid') return all.filter(s => s.kind === 'image').map(s => [s.id]);
  if (S.mode === 'errors') return all.filter(s => s.kind === 'error').map(s => [s.id]);
  const l = root().querySelector('.insp-left').value, r = root().querySelector('.insp-right').value;
  return S.mode === 'slider' ? [[l, r]] : [[l], [r]];
}

function build() {
  const stage = root().querySelector('.insp-stage');
  const W = stage.clientWidth || element.clientWidth || 600;
  const list = cells();
  let cols = 1;
  if (S.mode === 'side') cols = W >= 560 ? 2 : 1;
  else if (S.mode !== 'slider') cols = Math.max(1, Math.min(list.length, W >= 1000 ? 3 : 2));
  const gap = 6, vw = Math.floor((W - gap * (cols - 1)) / cols);
  const rowsOnScreen = S.mode === 'side' && cols === 1 ? 2 : (S.mode === 'slider' ? 1 : Math.min(2, Math.ceil(list.length / cols)));
  const maxH = Math.max(160, Math.min(560, Math.floor(0.75 * window.innerHeight / rowsOnScreen) - 24));
  const vh = Math.max(120, Math.min(maxH, Math.round(vw * S.cfg.h / S.cfg.w)));
  stage.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
  // the Left and Right menus choose what Side by side and Slider show; the other views show all
  root().querySelector('.insp-pick').hidden = !(S.mode === 'side' || S.mode === 'slider');
  stage.innerHTML = '';
  S.views = [];
  for (const ids of list) {
    const cell = document.createElement('div');
    cell.className = 'insp-cell';
    const cap = document.createElement('div');
    cap.className = 'insp-cap';
    cap.textContent = ids.map(i => src(i).detail).join('  |  ');
    const view = document.createElement('div');
    view.className = 'insp-view';
    view.style.height = vh + 'px';
    view.dataset.source = ids.join('|');
    const imgs = ids.map(i => {
      const im = document.createElement('img');
      im.src = url(src(i).url); im.alt = src(i).label; im.draggable = false;
      im.width = S.cfg.w; im.height = S.cfg.h;
      view.appendChild(im);
      return im;
    });
    if (ids.length === 2) {
      const h = document.createElement('div');
      h.className = 'insp-handle';
      view.appendChild(h);
      for (const [k, side] of [[0, 'left'], [1, 'right']]) {
        const t = document.createElement('span');
        t.className = 'insp-tag'; t.style[side] = '4px'; t.textContent = src(ids[k]).label;
        view.appendChild(t);
      }
    }
    cell.append(cap, view);
    stage.appendChild(cell);
    S.views.push({ view, imgs });
    view.addEventListener('wheel', onWheel, { passive: false });
    view.addEventListener('pointerdown', onDown);
    view.addEventListener('dblclick', e => { const p = at(view, e); zoomTo(S.fit ? 4 : fitScale(), p); });
  }
  render();
}

function fitScale() {
  if (!S.views.length) return 1;
  const v = S.views[0].view;
  return Math.min(v.clientWidth / S.cfg.w, v.clientHeight / S.cfg.h);
}

function clampCentre() {
  S.cx = Math.min(Math.max(S.cx, 0), S.cfg.w);
  S.cy = Math.min(Math.max(S.cy, 0), S.cfg.h);
}

function render() {
  if (S.fit) { S.scale = fitScale(); S.cx = S.cfg.w / 2; S.cy = S.cfg.h / 2; }
  clampCentre();
  const dpr = window.devicePixelRatio || 1, s = S.scale;
  let region = '';
  for (const { view, imgs } of S.views) {
    const vw = view.clientWidth, vh = view.clientHeight;
    const tx = Math.round((vw / 2 - S.cx * s) * dpr) / dpr, ty = Math.round((vh / 2 - S.cy * s) * dpr) / dpr;
    for (const im of imgs) im.style.transform = `translate(${tx}px, ${ty}px) scale(${s})`;
    view.classList.toggle('px', s >= 1);
    const x0 = Math.max(0, -tx / s), y0 = Math.max(0, -ty / s);
    const x1 = Math.min(S.cfg.w, (vw - tx) / s), y1 = Math.min(S.cfg.h, (vh - ty) / s);
    region = [x0, y0, x1, y1].map(v => Math.round(v * 10) / 10).join(',');
    view.dataset.region = region;
    view.dataset.scale = String(Math.round(s * 1000) / 1000);
    view.dataset.centre = `${Math.round(S.cx * 10) / 10},${Math.round(S.cy * 10) / 10}`;
    if (imgs.length === 2) {
      const x = Math.round(S.split * vw);
      imgs[1].style.clipPath = `inset(0 0 0 ${(x - tx) / s}px)`;
      view.querySelector('.insp-handle').style.left = x + 'px';
    }
  }
  const r = region.split(',').map(Number);
  const z = s >= 1 ? `${Math.round(s * 100) / 100}:1` : `1:${Math.round(100 / s) / 100}`;
  root().querySelector('.insp-readout').textContent = S.views.length ?
    `zoom ${z} · x ${Math.floor(r[0])}–${Math.ceil(r[2])}, y ${Math.floor(r[1])}–${Math.ceil(r[3])} of ${S.cfg.w}x${S.cfg.h}` : '';
  for (const b of root().querySelectorAll('[data-zoom]')) {
    const z = b.dataset.zoom;
    b.classList.toggle('on', z === 'fit' ? S.fit : !S.fit && z !== 'detail' && Math.abs(S.scale - Number(z)) < 1e-6);
  }
  for (const b of root().querySelectorAll('[data-mode]')) b.classList.toggle('on', b.dataset.mode === S.mode);
}

function at(view, e) {  // the image point under the pointer, and the pointer in view pixels
  const b = view.getBoundingClientRect();
  const mx = e.clientX - b.left, my = e.clientY - b.top;
  return { mx, my, vw: b.width, vh: b.height,
           x: S.cx + (mx - b.width / 2) / S.scale, y: S.cy + (my - b.height / 2) / S.scale };
}

function zoomTo(scale, p) {  // keep the image point p under the pointer (or the centre)
  const lo = Math.min(fitScale(), 1) / 2;
  scale = Math.min(Math.max(scale, lo), 64);
  if (p) { S.cx = p.x - (p.mx - p.vw / 2) / scale; S.cy = p.y - (p.my - p.vh / 2) / scale; }
  S.scale = scale; S.fit = false;
  render();
}

function onWheel(e) {  // a wheel notch (about 100 pixels) zooms by 2^(1/4): four notches double
  e.preventDefault();
  const p = at(e.currentTarget, e);
  const px = e.deltaY * (e.deltaMode === 1 ? 40 : e.deltaMode === 2 ? 800 : 1);
  zoomTo(S.scale * Math.pow(2, -Math.max(-150, Math.min(150, px)) / 400), p);
}

function onDown(e) {
  const view = e.currentTarget;
  view.setPointerCapture(e.pointerId);
  ptrs.set(e.pointerId, { x: e.clientX, y: e.clientY });
  const onHandle = e.target.classList.contains('insp-handle');
  drag = { view, handle: onHandle, x: e.clientX, y: e.clientY, cx: S.cx, cy: S.cy };
  if (ptrs.size === 2) {
    const [a, b] = [...ptrs.values()];
    drag.pinch = { d: Math.hypot(a.x - b.x, a.y - b.y), scale: S.scale };
  }
  view.addEventListener('pointermove', onMove);
  view.addEventListener('pointerup', onUp);
  view.addEventListener('pointercancel', onUp);
}

function onMove(e) {
  if (!drag) return;
  ptrs.set(e.pointerId, { x: e.clientX, y: e.clientY });
  if (drag.pinch && ptrs.size === 2) {
    const [a, b] = [...ptrs.values()];
    const p = at(drag.view, { clientX: (a.x + b.x) / 2, clientY: (a.y + b.y) / 2 });
    zoomTo(drag.pinch.scale * Math.hypot(a.x - b.x, a.y - b.y) / drag.pinch.d, p);
    return;
  }
  if (drag.handle) {
    const b = drag.view.getBoundingClientRect();
    S.split = Math.min(Math.max((e.clientX - b.left) / b.width, 0), 1);
    render();
    return;
  }
  if (S.fit) { S.fit = false; }
  S.cx = drag.cx - (e.clientX - drag.x) / S.scale;
  S.cy = drag.cy - (e.clientY - drag.y) / S.scale;
  render();
}

function onUp(e) {
  ptrs.delete(e.pointerId);
  if (ptrs.size === 0 && drag) {
    drag.view.removeEventListener('pointermove', onMove);
    drag.view.removeEventListener('pointerup', onUp);
    drag.view.removeEventListener('pointercancel', onUp);
    drag = null;
  }
}

function init() {
  const r = root();
  if (!r) { S.cfg = null; return; }
  const cfg = JSON.parse(r.dataset.config);
  const same = S.cfg && S.cfg.w === cfg.w && S.cfg.h === cfg.h;
  S.cfg = cfg;
  if (!same) { S.fit = true; S.split = 0.5; }
  const ids = cfg.sources.map(s => s.id);
  r.querySelector('.insp-left').value = ids.includes(cfg.left) ? cfg.left : ids[0];
  r.querySelector('.insp-right').value = ids.includes(cfg.right) ? cfg.right : ids[Math.min(1, ids.length - 1)];
  r.querySelectorAll('select').forEach(sel => sel.addEventListener('change', build));
  r.querySelectorAll('[data-mode]').forEach(b => b.addEventListener('click', () => { S.mode = b.dataset.mode; build(); }));
  r.querySelectorAll('[data-zoom]').forEach(b => b.addEventListener('click', () => {
    const z = b.dataset.zoom;
    if (z === 'fit') { S.fit = true; render(); }
    else if (z === 'detail') { S.cx = S.cfg.detail[0]; S.cy = S.cfg.detail[1]; zoomTo(4); }
    else zoomTo(Number(z));
  }));
  build();
}

let lastW = 0;
new ResizeObserver(() => {
  const w = element.clientWidth;
  if (S.cfg && root() && Math.abs(w - lastW) > 1) { lastW = w; build(); }
}).observe(element);
watch('value', init);
init();
"""
