"""Assistant tools behind one protocol (``base.Tool``), found by type in ``registry.TOOLS``."""
