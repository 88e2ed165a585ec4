"""Renderers (HTML + plain text) and widgets: the only package that knows about front ends.

Each module serves one concern (model cards, chat replies, token views). HTML is self-contained
(inline CSS, no JavaScript, no CDN) and escapes everything that came from a user or a model.
"""
