"""catalog layer (see checks/__init__.py)."""
