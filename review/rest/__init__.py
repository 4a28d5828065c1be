"""The REST API under /api/v1/, one module per noun; review/api_urls.py routes it.

live and engagement serve delivery systems (read and write tokens); the others are
the workflow the pages offer, with the pages' permissions (permissions.py)."""
