"""Per-node kubelet of the twin: runs bound pods as real local processes or emulated programs.

The seam for emulated images and DRA plugins is :mod:`kubetwin.kubelet.seam`.
"""
