"""The twin's kube-scheduler (:mod:`.scheduler`) and its DynamicResources pieces; ``dra/`` is the allocator."""
