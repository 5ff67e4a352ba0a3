"""The Gradio studio: one module per tab, no engine logic."""
