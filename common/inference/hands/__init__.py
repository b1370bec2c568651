"""The bundle's two hand models run directly with LiteRT, with MediaPipe's geometry around them.

``HandPipeline`` is stateless (one per worker, shared by all its streams); a stream's tracking state is
just the ``Roi`` values it keeps. See docs/architecture.md ("Hand pipeline").
"""

from hgr.common.inference.hands.pipeline import Hand, HandPipeline, Roi, dedupe

__all__ = ["Hand", "HandPipeline", "Roi", "dedupe"]
