"""The Gradio app's logic (app.py at the top is its layout and wiring): `ui` (a comparison as the
page shows it), `inspector` (the synchronised zoom), `outputs` (each run's files), `owners` (run
folders of dead processes) and `rdplot` (the rate-distortion plot of one image).
"""
