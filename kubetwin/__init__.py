"""kubetwin: an embedded Kubernetes for tests — API server, controllers, scheduler with the DRA allocator, kubelet.

It speaks the real protocol (HTTPS, JSON/protobuf, watches, discovery, OpenAPI), so the official Python client,
kubectl and helm work against it. It knows nothing of any device vendor: emulated images and DRA plugins plug in
through :mod:`kubetwin.kubelet.seam`. It never imports ``checks`` (``lint-imports`` enforces it).

Layers, top to bottom (imports only go downwards):

- ``cluster``  — :class:`kubetwin.cluster.Cluster`: API + HTTPS server + controllers + scheduler + kubelets.
- ``controllers`` · ``scheduler`` · ``kubelet`` — the control loops (scheduler: the DRA allocator + CEL).
- ``informer`` · ``passloop`` · ``nodes`` — shared informers and work queues, the level-triggered pass loop,
  Node objects and their heartbeats.
- ``api``      — the store and the semantics every caller shares, and the HTTPS front end.
- ``errors``   — :class:`ConfigError` for settings kubetwin cannot run with.
"""
