"""Importers: other frameworks' trained models into ordinary bratsx model folders (``bratsx import``)."""
