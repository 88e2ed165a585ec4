"""Inside the model: attention weights, the logit lens, the architecture, a reply's alternatives. IPython-free analyses over
an engine that `HoldsModel`; the magics (`magics.inside`, `%llm_next --lens`) and the displays
(`display.attention`, `display.lens`, `display.architecture`) sit on top of them.

Importing this package imports nothing heavy; its modules import numpy, and torch inside functions.
"""
