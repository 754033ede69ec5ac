"""The metric's Gradio widget, as an evaluate Space runs it (``python app.py``; needs gradio)."""

from pathlib import Path

import evaluate
from evaluate.utils import launch_gradio_widget

if __name__ == "__main__":
    launch_gradio_widget(evaluate.load(str(Path(__file__).resolve().parent)))
