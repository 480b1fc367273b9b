"""Curation: per-sample scores (text, image, model), the drop decisions made from them, and the audit report."""
