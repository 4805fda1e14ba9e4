"""The twin's Kubernetes API: store, kinds, semantics (core) and the HTTPS front end."""
